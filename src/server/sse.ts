// Server-Sent Events out to the client: headers once, each event written and flushed as it arrives,
// backpressure honoured, and the upstream cancelled when the client goes away. Events that become
// ready in the same turn of the event loop (several chunks parsed from one upstream read) leave in
// one socket write: the response is corked from the first write of a turn until setImmediate —
// except the first event, which leaves at once with the headers.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { turnCork } from '../gateway/turn-cork.js';

export interface SseEvent {
  event?: string;
  data: string;
}

export interface SseOptions {
  /** Response headers besides the event-stream ones (a Fastify reply's `getHeaders()` fits). */
  headers: OutgoingHttpHeaders;
  /** Trailer fields sent after the last event (final cost and latency of a stream). */
  trailers?: () => Record<string, string>;
  /** Called with the error when the source fails after the headers went out; returns a last event. */
  onError: (err: unknown) => SseEvent | undefined;
}

/**
 * Streams events to `res`. Returns when the source ends, fails or the client disconnects (then the
 * source iterator is closed, which cancels the upstream and lets the stages behind it settle what
 * the request reserved). A client may be gone before this is called — it left while the gateway
 * waited on authentication, a limit or the cache — and its `close` event has then fired already:
 * such a response counts as closed from the start, and the source is closed without being read.
 */
export async function writeSse(res: ServerResponse, events: AsyncIterable<SseEvent>, opts: SseOptions): Promise<void> {
  const iterator = events[Symbol.asyncIterator]();
  let closed = res.destroyed || res.writableEnded;
  const onClose = () => {
    closed = true;
  };
  res.once('close', onClose);
  const gone = () => closed || res.destroyed;
  let exhausted = false;
  try {
    if (gone()) return;
    const trailerNames = opts.trailers ? Object.keys(opts.trailers()) : [];
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      // No `connection` header of its own: Node says keep-alive, and on a connection's last request
      // (server.max_requests_per_connection) the onRequest hook in app.ts has set `close`, which
      // arrives in opts.headers.
      'x-accel-buffering': 'no',
      ...(trailerNames.length ? { trailer: trailerNames.join(', ') } : {}),
      ...opts.headers,
    });
    // Corked until the first event or the end of this turn: the headers leave with the first event.
    // The first event goes at once (its turn's later events follow in one more write): a burst — a
    // cache replay, an upstream that sends the whole answer in one read — would otherwise reach the
    // client only once every event of it had been through the pipeline.
    const turn = turnCork(res);
    const write = (chunk: string): boolean => {
      turn.hold();
      return res.write(chunk);
    };
    write('');
    let first = true;
    while (!gone()) {
      let next: IteratorResult<SseEvent>;
      try {
        next = await iterator.next();
      } catch (err) {
        const last = opts.onError(err);
        if (last && !gone()) write(format(last));
        break;
      }
      if (next.done) {
        exhausted = true;
        break;
      }
      if (gone()) break;
      const room = write(format(next.value));
      if (first) {
        first = false;
        turn.release();
      }
      if (!room) {
        // A full buffer never drains while corked.
        turn.release();
        await drained(res);
      }
    }
  } finally {
    res.off('close', onClose);
    // Whatever ended the loop short of the source's end (the client gone, a failed write), the source
    // is closed: that cancels the upstream request and runs the stages' end-of-stream accounting.
    if (!exhausted) await Promise.resolve(iterator.return?.(undefined)).catch(() => undefined);
    if (!gone()) {
      if (opts.trailers) res.addTrailers(opts.trailers());
      res.end();
    }
  }
}

function format(e: SseEvent): string {
  return e.event ? `event: ${e.event}\ndata: ${e.data}\n\n` : `data: ${e.data}\n\n`;
}

/** Resolves when the buffer drained or the response is gone (a destroyed response never drains). */
function drained(res: ServerResponse): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
