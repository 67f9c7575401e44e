// Turning a cached answer back into what the client asked for: a stored stream replays with its
// original chunking (new response id), a stored result becomes a short stream, and a stored stream
// folds into a result for a non-streaming request with the same key.
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import { foldChunks, iterate, resultToChunks } from '../canonical/convert.js';
import type { CachedAnswer } from './entry.js';

/** The answer as a result, under a new response id. */
export function answerToResult(answer: CachedAnswer, id: string): ChatResult {
  const result = answer.kind === 'result' ? structuredClone(answer.result) : foldChunks(answer.chunks);
  result.id = id;
  return result;
}

/**
 * Replays the answer as a stream under a new response id, chunk for chunk. The chunks are made here,
 * not as the stream is read: an answer that cannot be replayed fails the lookup (a miss), not the
 * response after its headers went out.
 */
export function answerToStream(answer: CachedAnswer, id: string): AsyncGenerator<ChatChunk> {
  const chunks = answer.kind === 'stream' ? answer.chunks : resultToChunks(answer.result);
  return iterate(chunks.map((chunk) => ({ ...chunk, id })));
}
