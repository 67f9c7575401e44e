// Attempt timeouts as the catalog gives them to deployments, and what the router does with them: a
// deployment (or the passthrough one) that sets no timeout_ms is not cut after 30 s and paid for
// three times; its attempt is bounded by the request's deadline instead.
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { ChatRequest, ChatResult } from '../canonical/chat.js';
import { modelGroupSchema, routingSchema } from '../config/schema.js';
import { ANONYMOUS, defaultRequestOptions, newFacts, type RequestContext } from '../gateway/context.js';
import { UpstreamError } from '../providers/errors.js';
import type { CallOptions, ProviderAdapter } from '../providers/types.js';
import type { GatewayError } from '../server/errors.js';
import { DEFAULT_TIMEOUT_MS, ModelCatalog } from './catalog.js';
import { Router } from './router.js';

const log = pino({ level: 'silent' });

/** Answers after `delayMs` (or when its call is cancelled, with an abort); records each call's timeout. */
class SlowProvider implements ProviderAdapter {
  readonly type = 'simulator' as const;
  readonly timeouts: number[] = [];
  constructor(
    readonly name: string,
    private readonly delayMs = 0,
  ) {}
  chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    this.timeouts.push(opts.timeoutMs);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => resolve(answer(req.model)), this.delayMs);
      opts.signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(new UpstreamError({ provider: this.name, kind: 'aborted', message: 'aborted' }));
      }, { once: true });
    });
  }
  streamChat(): Promise<never> {
    return Promise.reject(new Error('not used'));
  }
  embed(): Promise<never> {
    return Promise.reject(new Error('not used'));
  }
  async ready() {
    return true;
  }
  async close() {}
}

function answer(model: string): ChatResult {
  return {
    id: 'x',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'long answer' }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
}

function ctx(): RequestContext {
  return { id: 'req-1', startedAt: performance.now(), endpoint: 'chat', tenant: ANONYMOUS, signal: new AbortController().signal, log, options: defaultRequestOptions(), facts: newFacts(), headers: {} };
}

const chat = (model: string): ChatRequest => ({ model, messages: [{ role: 'user', content: 'prove it' }] });

const routers: Router[] = [];
afterEach(async () => {
  for (const r of routers.splice(0)) await r.close();
});

function router(catalog: ModelCatalog, routing: Record<string, unknown> = {}): Router {
  const r = new Router(catalog, { config: routingSchema.parse({ dedup: 'off', ...routing }), log, random: () => 0 });
  routers.push(r);
  return r;
}

describe('ModelCatalog: attempt timeouts', () => {
  it('gives a passthrough deployment the 600 s default, not 30 s', () => {
    const p = new SlowProvider('openai');
    const catalog = new ModelCatalog([], new Map([['openai', p]]), 'openai');
    expect(DEFAULT_TIMEOUT_MS).toBe(600_000);
    expect(catalog.resolve('o3').deployments[0]?.timeoutMs).toBe(600_000);
  });

  it('gives a configured deployment without timeout_ms the default, and keeps its own when set', () => {
    const p = new SlowProvider('up');
    const groups = [modelGroupSchema.parse({ name: 'g', deployments: [{ provider: 'up', model: 'a' }, { provider: 'up', model: 'b', timeout_ms: 1_500 }] })];
    const catalog = new ModelCatalog(groups, new Map([['up', p]]));
    expect(catalog.resolve('g').deployments.map((d) => d.timeoutMs)).toEqual([600_000, 1_500]);
  });
});

describe('ModelCatalog: a provider\'s timeout_ms', () => {
  it('is the default of its deployments; a deployment\'s own timeout_ms wins', () => {
    const groups = [
      modelGroupSchema.parse({
        name: 'g',
        deployments: [{ provider: 'slow', model: 'a' }, { provider: 'slow', model: 'b', timeout_ms: 2_500 }, { provider: 'plain', model: 'c' }],
      }),
    ];
    const catalog = new ModelCatalog(groups, new Map([['slow', new SlowProvider('slow')], ['plain', new SlowProvider('plain')]]), undefined, { slow: { timeout_ms: 1_000 }, plain: {} });
    expect(catalog.resolve('g').deployments.map((d) => d.timeoutMs)).toEqual([1_000, 2_500, 600_000]);
  });

  it('is the timeout of the passthrough deployment built from that provider', () => {
    const catalog = new ModelCatalog([], new Map([['openai', new SlowProvider('openai')]]), 'openai', { openai: { timeout_ms: 45_000 } });
    expect(catalog.resolve('o3').deployments[0]?.timeoutMs).toBe(45_000);
  });
});

describe('Router: attempt timeouts of deployments without timeout_ms', () => {
  it('lets a passthrough attempt run to the request deadline (one upstream call), not 30 s', async () => {
    const p = new SlowProvider('openai');
    const r = router(new ModelCatalog([], new Map([['openai', p]]), 'openai'), { deadline_ms: 900_000 });
    await r.handler(ctx(), chat('o3'));
    // The attempt's own limit is the 600 s default (the deadline, 900 s here, is further away).
    expect(p.timeouts).toHaveLength(1);
    expect(p.timeouts[0]).toBe(600_000);
  });

  it('caps the attempt at the request deadline, which ends it without a retry (504)', async () => {
    const p = new SlowProvider('openai', 5_000);
    const r = router(new ModelCatalog([], new Map([['openai', p]]), 'openai'), { deadline_ms: 300 });
    const err = (await r.handler(ctx(), chat('o3')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('upstream_timeout');
    expect(err.message).toContain('deadline');
    expect(p.timeouts).toHaveLength(1);
    expect(p.timeouts[0]).toBeLessThanOrEqual(300 + 50);
  });

  it('retries an attempt its own timeout_ms ended only as the retry policy says (max_retries)', async () => {
    const p = new SlowProvider('up', 5_000);
    const groups = [modelGroupSchema.parse({ name: 'g', deployments: [{ provider: 'up', model: 'a', timeout_ms: 40 }] })];
    for (const [maxRetries, calls] of [[0, 1], [1, 2]] as const) {
      p.timeouts.length = 0;
      const r = router(new ModelCatalog(groups, new Map([['up', p]])), { retry: { max_retries: maxRetries, base_delay_ms: 1, max_delay_ms: 1 } });
      const err = (await r.handler(ctx(), chat('g')).catch((e: unknown) => e)) as GatewayError;
      expect(err.code).toBe('upstream_timeout');
      expect(p.timeouts).toHaveLength(calls);
    }
  });
});
