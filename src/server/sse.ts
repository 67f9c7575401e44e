// Server-Sent Events out to the client: headers once, each event written and flushed as it arrives,
// backpressure honoured, and the upstream cancelled when the client goes away.
import type { ServerResponse } from 'node:http';

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
  res.flushHeaders();
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
        if (last && !closed) res.write(format(last));
        break;
      }
      if (next.done || closed) break;
      if (!res.write(format(next.value))) await drained(res);
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
