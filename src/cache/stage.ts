// The cache as a gateway stage: answers hits (a result, or the stored stream replayed chunk for
// chunk) and stores what the rest of the pipeline answers on a miss. A cache failure never fails a
// request: lookup errors count as a miss, store errors are logged.
import { randomBase64Url } from '../gateway/ids.js';
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import { foldChunks } from '../canonical/convert.js';
import type { RequestContext } from '../gateway/context.js';
import { observeStream, type ChatOutcome, type ChatStage } from '../gateway/pipeline.js';
import { answerToResult, answerToStream } from './replay.js';
import type { Probe, ResponseCache } from './response-cache.js';

export interface CacheStageDeps {
  cache: ResponseCache;
  /** Tenant metadata flag that opts a tenant in to semantic hits at any temperature. */
  semanticOptInFlag?: string;
}

function responseId(): string {
  return `chatcmpl-${randomBase64Url(12)}`;
}

function saved(ctx: RequestContext, tokens: number): { tokens: number; costUsd: number } {
  return { tokens, costUsd: ctx.facts.costUsd };
}

/**
 * An answer short of what this request gets when it runs to the end, so not one to serve for the
 * TTL: the client went away (test-time scaling then answers from the passes that had finished), or
 * scaling answered from fewer passes than it planned without deciding to stop (its deadline, passes
 * that failed), or by a vote because its judge failed (ctx.facts.scaling, src/scaling/stage.ts).
 */
function partial(ctx: RequestContext): boolean {
  if (ctx.signal.aborted) return true;
  const s = ctx.facts.scaling;
  if (!s) return false;
  if (s.deadline_reached === true || s.judge_fallback !== undefined) return true;
  return typeof s.passes === 'number' && typeof s.passes_planned === 'number' && s.passes < s.passes_planned && s.stopped_early !== true;
}

/**
 * Whether an answer is one to serve again for the TTL: not when a choice was filtered or refused
 * (finish_reason content_filter: Gemini's SAFETY or RECITATION with the text cut, OpenAI's filter,
 * Anthropic's refusal; OpenAI's `refusal` field), whose verdict another sample or a later model may
 * not repeat, nor when a choice says nothing (no text, tool call or audio), nor an unfinished one
 * (Anthropic's pause_turn: the client sends it back to be continued).
 */
function worthKeeping(result: ChatResult): boolean {
  return (
    result.choices.length > 0 &&
    result.choices.every((c) => c.finish_reason !== 'content_filter' && !c.paused && !c.message.refusal && (!!c.message.content || !!c.message.tool_calls?.length || c.message.audio !== undefined))
  );
}

export function createCacheStage(deps: CacheStageDeps): ChatStage {
  const { cache } = deps;
  const optIn = deps.semanticOptInFlag ?? 'semantic_cache_any_temperature';

  return async function cacheStage(ctx, req, next) {
    const directives = ctx.options.cache;
    if (directives.noCache && directives.noStore) {
      ctx.facts.cache = 'bypass';
      return next(ctx, req);
    }
    let probe: Probe | undefined;
    try {
      const lookupOpts: Parameters<ResponseCache['lookup']>[2] = {
        skipRead: directives.noCache,
        semanticAnyTemperature: ctx.tenant.metadata?.[optIn] === true,
        // Scaling runs inside the cache and answers by the requested level: easy and expert are different answers.
        difficulty: ctx.options.difficulty,
        aggregation: ctx.options.aggregation,
      };
      if (directives.maxAgeS !== undefined) lookupOpts.maxAgeS = directives.maxAgeS;
      // Made before anything is awaited: a lookup that fails still leaves the key to store the answer under.
      probe = cache.probe(ctx.tenant.id, req, lookupOpts);
      const hit = await cache.read(probe, req, lookupOpts);
      if (hit) {
        const id = responseId();
        // Made in full before the facts say hit: an answer that cannot be replayed is a miss.
        const answer: ChatOutcome = req.stream ? { kind: 'stream', stream: answerToStream(hit.answer, id) } : { kind: 'result', result: answerToResult(hit.answer, id) };
        ctx.facts.cache = hit.kind;
        if (hit.similarity !== undefined) ctx.facts.similarity = hit.similarity;
        ctx.facts.model = hit.meta.model;
        ctx.facts.savedUsd = hit.meta.costUsd;
        return answer;
      }
    } catch (err) {
      ctx.log.warn({ err }, 'cache lookup failed; treating as a miss');
    }
    ctx.facts.cache = directives.noCache ? 'bypass' : 'miss';
    const outcome = await next(ctx, req);
    // A fallback group's answer stands in for this group's while it is down: not one to keep for the TTL.
    if (directives.noStore || !probe || ctx.facts.fallbackGroup !== undefined) return outcome;
    const p = probe;
    const storeFailed = (err: unknown) => ctx.log.warn({ err }, 'cache store failed');
    if (outcome.kind === 'result') {
      if (partial(ctx) || !worthKeeping(outcome.result)) return outcome;
      void cache.put(p, { kind: 'result', result: outcome.result }, saved(ctx, outcome.result.usage.total_tokens)).catch(storeFailed);
      return outcome;
    }
    const chunks: ChatChunk[] = [];
    const stream = observeStream(
      outcome.stream,
      (chunk) => chunks.push(chunk),
      ({ completed }) => {
        // Only a stream that ran to its end is an answer worth replaying.
        if (!completed || partial(ctx) || chunks.length === 0 || !worthKeeping(foldChunks(chunks))) return;
        const usage = chunks[chunks.length - 1]?.usage;
        void cache.put(p, { kind: 'stream', chunks }, saved(ctx, usage?.total_tokens ?? 0)).catch(storeFailed);
      },
    );
    return { kind: 'stream', stream };
  };
}
