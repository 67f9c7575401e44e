// Test scaffolding for the cache: a request context, a simulator-backed terminal handler that counts
// upstream calls, and a static embedder created once per test file.
import pino from 'pino';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { defaultRequestOptions, newFacts, type RequestContext, type Tenant } from '../gateway/context.js';
import type { ChatHandler, ChatOutcome } from '../gateway/pipeline.js';
import { createSimulatorProvider } from '../providers/simulator.js';
import { MemoryCacheStore } from './stores/memory.js';
import type { CacheStore, StoreEvent } from './stores/types.js';

const silent = pino({ level: 'silent' });

export function testContext(tenant: string | Tenant = 'acme', cache: Partial<RequestContext['options']['cache']> = {}): RequestContext {
  const options = defaultRequestOptions();
  options.cache = { ...options.cache, ...cache };
  return {
    id: 'req-1',
    startedAt: performance.now(),
    endpoint: '/v1/chat/completions',
    tenant: typeof tenant === 'string' ? { id: tenant, kind: 'token' } : tenant,
    signal: new AbortController().signal,
    log: silent,
    options,
    facts: newFacts(),
    headers: {},
  };
}

/** The simulator as the rest of the pipeline; `calls` counts requests that reached it. */
export function simulatorTerminal(): ChatHandler & { calls: number } {
  const sim = createSimulatorProvider('sim');
  const handler = (async (ctx: RequestContext, req: ChatRequest): Promise<ChatOutcome> => {
    handler.calls++;
    ctx.facts.costUsd = 0.002;
    const opts = { signal: ctx.signal, timeoutMs: 5000, requestId: ctx.id };
    if (req.stream) return { kind: 'stream', stream: await sim.streamChat(req, opts) };
    return { kind: 'result', result: await sim.chat(req, opts) };
  }) as ChatHandler & { calls: number };
  handler.calls = 0;
  return handler;
}

export async function drain(outcome: ChatOutcome): Promise<ChatChunk[]> {
  if (outcome.kind !== 'stream') throw new Error('expected a stream');
  const out: ChatChunk[] = [];
  for await (const c of outcome.stream) out.push(c);
  return out;
}

export function userRequest(text: string, extra: Partial<ChatRequest> = {}): ChatRequest {
  return { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content: text }], temperature: 0, ...extra };
}

/**
 * A memory store whose change events reach the cache only while `muted` is false, as a lagging
 * Redis follower's would; `deliver` hands the cache an event directly (a `resync`).
 */
export function laggingStore(maxBytes = 1e7): { inner: MemoryCacheStore; store: CacheStore; mute(on: boolean): void; deliver(e: StoreEvent): void } {
  const inner = new MemoryCacheStore({ maxBytes });
  let listener: ((e: StoreEvent) => void) | undefined;
  let muted = false;
  inner.subscribe((e) => {
    if (!muted) listener?.(e);
  });
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'subscribe') return (l: (e: StoreEvent) => void) => (listener = l);
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { inner, store, mute: (on) => (muted = on), deliver: (e) => listener?.(e) };
}
