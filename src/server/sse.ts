// Server-Sent Events out to the client: headers once, each event written and flushed as it arrives,
// backpressure honoured, and the upstream cancelled when the client goes away. Events that become
// ready in the same turn of the event loop (several chunks parsed from one upstream read) leave in
// one socket write: the response is corked from the first write of a turn until setImmediate.
import type { ServerResponse } from 'node:http';
import { turnCork } from '../gateway/turn-cork.js';

export interface SseEvent {
  event?: string;
  data: string;
}

export interface SseOptions {
  headers: Record<string, string>;
  /** Trailer fields sent after the last event (final cost and latency of a stream). */
  trailers?: () => Record<string, string>;
  /** Called with the error when the source fails after the headers went out; returns a last event. */
  onError: (err: unknown) => SseEvent | undefined;
}

/**
 * Streams events to `res`. Returns when the source ends, fails or the client disconnects (then the
 * source iterator is closed, which cancels the upstream).
 */
export async function writeSse(res: ServerResponse, events: AsyncIterable<SseEvent>, opts: SseOptions): Promise<void> {
  const trailerNames = opts.trailers ? Object.keys(opts.trailers()) : [];
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    ...(trailerNames.length ? { trailer: trailerNames.join(', ') } : {}),
    ...opts.headers,
  });
  // Corked until the end of this turn: the headers leave with the first events.
  const turn = turnCork(res);
  const write = (chunk: string): boolean => {
    turn.hold();
    return res.write(chunk);
  };
  write('');
  let closed = false;
  const onClose = () => {
    closed = true;
  };
  res.once('close', onClose);
  const iterator = events[Symbol.asyncIterator]();
  try {
    while (!closed) {
      let next: IteratorResult<SseEvent>;
      try {
        next = await iterator.next();
      } catch (err) {
        const last = opts.onError(err);
        if (last && !closed) write(format(last));
        break;
      }
      if (next.done || closed) break;
      if (!write(format(next.value))) {
        // A full buffer never drains while corked.
        turn.release();
        await drained(res);
      }
    }
  } finally {
    res.off('close', onClose);
    if (closed) {
      // Client gone: close the source so the upstream request is cancelled.
      await iterator.return?.(undefined)?.catch(() => undefined);
    } else {
      if (opts.trailers) res.addTrailers(opts.trailers());
      res.end();
    }
  }
}

function format(e: SseEvent): string {
  return e.event ? `event: ${e.event}\ndata: ${e.data}\n\n` : `data: ${e.data}\n\n`;
}

function drained(res: ServerResponse): Promise<void> {
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
