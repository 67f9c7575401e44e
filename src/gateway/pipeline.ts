// A request's way through the gateway as a chain of stages (auth and admission happen at the HTTP
// edge; caching, planning, routing and accounting here). Each stage is a named function built once
// by a factory; it may answer itself (a cache hit), or call `next` and look at what comes back.
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';
import type { RequestContext } from './context.js';

export type ChatOutcome =
  | { kind: 'result'; result: ChatResult }
  | { kind: 'stream'; stream: AsyncIterable<ChatChunk> };

export type ChatHandler = (ctx: RequestContext, req: ChatRequest) => Promise<ChatOutcome>;
export type ChatStage = (ctx: RequestContext, req: ChatRequest, next: ChatHandler) => Promise<ChatOutcome>;

/** Composes stages around a terminal handler, outermost first. */
export function composeStages(stages: readonly ChatStage[], terminal: ChatHandler): ChatHandler {
  let handler = terminal;
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i] as ChatStage;
    const next = handler;
    handler = (ctx, req) => stage(ctx, req, next);
  }
  return handler;
}

/**
 * Wraps a stream so `onEnd` runs exactly once when it finishes, fails or is abandoned by the
 * consumer, with every chunk seen. Stages use it to account, cache or record streamed answers.
 */
export function observeStream(
  stream: AsyncIterable<ChatChunk>,
  onChunk: (chunk: ChatChunk) => void,
  onEnd: (outcome: { completed: boolean; error?: unknown }) => void,
): AsyncIterable<ChatChunk> {
  return {
    async *[Symbol.asyncIterator]() {
      let completed = false;
      let error: unknown;
      try {
        for await (const chunk of stream) {
          onChunk(chunk);
          yield chunk;
        }
        completed = true;
      } catch (err) {
        error = err;
        throw err;
      } finally {
        onEnd({ completed, error });
      }
    },
  };
}
