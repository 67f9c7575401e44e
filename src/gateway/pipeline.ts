// A request's way through the gateway as a chain of stages (auth and admission happen at the HTTP
// edge; caching, planning, routing and accounting here). Each stage is a named function built once
// by a factory; it may answer itself (a cache hit), or call `next` and look at what comes back.
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';
import type { RequestContext } from './context.js';

export type ChatOutcome =
  | { kind: 'result'; result: ChatResult }
  | { kind: 'stream'; stream: AsyncIterable<ChatChunk> };

export type ChatHandler = (ctx: RequestContext, req: ChatRequest) => Promise<ChatOutcome>;
/**
 * A stage fails by rejecting, never by throwing. It need not guard `next`: composeStages turns any
 * synchronous throw into a rejection, so a stage that is not an async function (the common request's
 * stages pass it on without a promise of their own) may chain on what `next` returns.
 */
export type ChatStage = (ctx: RequestContext, req: ChatRequest, next: ChatHandler) => Promise<ChatOutcome>;

/**
 * Composes stages around a terminal handler, outermost first. A stage that throws instead of
 * rejecting is turned into a rejection here, once, so every `next` a stage is given returns a
 * promise and never throws.
 */
export function composeStages(stages: readonly ChatStage[], terminal: ChatHandler): ChatHandler {
  let handler = rejectingThrows(terminal);
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i] as ChatStage;
    const next = handler;
    handler = rejectingThrows((ctx, req) => stage(ctx, req, next));
  }
  return handler;
}

function rejectingThrows(handler: ChatHandler): ChatHandler {
  return (ctx, req) => {
    try {
      return handler(ctx, req);
    } catch (err) {
      return Promise.reject(err);
    }
  };
}

/**
 * Wraps a stream so `onEnd` runs exactly once when it finishes, fails or is abandoned by the
 * consumer, with every chunk seen. Stages use it to account, cache or record streamed answers.
 * A plain iterator rather than an async generator: a stream passes through several of these, and
 * each generator layer cost several promises and result objects per chunk.
 */
export function observeStream(
  stream: AsyncIterable<ChatChunk>,
  onChunk: (chunk: ChatChunk) => void,
  onEnd: (outcome: { completed: boolean; error?: unknown }) => void,
): AsyncIterable<ChatChunk> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<ChatChunk> {
      const it = stream[Symbol.asyncIterator]();
      let ended = false;
      const end = (completed: boolean, error?: unknown) => {
        if (ended) return;
        ended = true;
        onEnd(error === undefined ? { completed } : { completed, error });
      };
      return {
        async next(): Promise<IteratorResult<ChatChunk>> {
          if (ended) return { done: true, value: undefined };
          let r: IteratorResult<ChatChunk>;
          try {
            r = await it.next();
          } catch (err) {
            end(false, err);
            throw err;
          }
          if (r.done) {
            end(true);
            return r;
          }
          try {
            onChunk(r.value);
          } catch (err) {
            // The source did not fail: close it, as a for-await loop would.
            end(false, err);
            await Promise.resolve(it.return?.()).catch(() => undefined);
            throw err;
          }
          return r;
        },
        async return(): Promise<IteratorResult<ChatChunk>> {
          const first = !ended;
          end(false);
          if (first) await it.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
