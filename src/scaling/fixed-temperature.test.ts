import { describe, expect, it } from 'vitest';
import type { ModelCatalog } from '../routing/catalog.js';
import { inferenceSchema } from './config.js';
import { fixedTemperatureModel } from './fixed-temperature.js';
import { scalingOptions } from './setup.js';
import { createOpenAIProvider } from '../providers/openai.js';
import type { ProviderAdapter } from '../providers/types.js';

describe('fixedTemperatureModel', () => {
  it('knows OpenAI reasoning models (o-series, gpt-5), with or without a router prefix', () => {
    for (const m of ['o1', 'o1-mini', 'o3', 'o3-mini-2025-01-31', 'o4-mini', 'gpt-5', 'gpt-5-mini', 'gpt-5.1', 'openai/o3', 'GPT-5-nano']) expect(fixedTemperatureModel(m), m).toBe(true);
    for (const m of ['gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'omni-moderation', 'llama-3-70b', 'gpt-50x', 'mistral-7b']) expect(fixedTemperatureModel(m), m).toBe(false);
  });
});

describe('the stage option setup.ts builds', () => {
  it('also looks at the upstream model of every deployment that may answer a public name', async () => {
    const groups: Record<string, Array<{ deployments: Array<{ model: string }> }>> = {
      reasoner: [{ deployments: [{ model: 'gpt-4o' }] }, { deployments: [{ model: 'o3-mini' }] }],
      chat: [{ deployments: [{ model: 'gpt-4o' }] }],
    };
    const catalog = { reachable: (m: string) => groups[m] ?? [] } as unknown as ModelCatalog;
    const opts = await scalingOptions(inferenceSchema.parse({ test_time_scaling: { estimator: { enabled: false } } }), () => catalog);
    expect(opts.fixedTemperature?.('reasoner')).toBe(true);
    expect(opts.fixedTemperature?.('chat')).toBe(false);
    expect(opts.fixedTemperature?.('o1')).toBe(true);
  });
});

describe('which models take n in one call (setup.ts)', () => {
  it('counts an openai provider that fans n out (options.choices: fan_out) as one call per choice', async () => {
    const native = createOpenAIProvider('vllm', { type: 'openai', base_url: 'http://127.0.0.1:1/v1' });
    const fanning = createOpenAIProvider('ollama-v1', { type: 'openai', base_url: 'http://127.0.0.1:1/v1', options: { choices: 'fan_out' } });
    const group = (p: ProviderAdapter) => [{ deployments: [{ model: 'm', provider: p }] }];
    const groups: Record<string, ReturnType<typeof group>> = { native: group(native), fanning: group(fanning) };
    const catalog = { resolve: (m: string) => groups[m]?.[0], reachable: (m: string) => groups[m] ?? [] } as unknown as ModelCatalog;
    const opts = await scalingOptions(inferenceSchema.parse({ test_time_scaling: { estimator: { enabled: false } } }), () => catalog);
    expect([opts.supportsN?.('native'), opts.promptPerChoice?.('native')]).toEqual([true, false]);
    expect([opts.supportsN?.('fanning'), opts.promptPerChoice?.('fanning')]).toEqual([false, true]);
    await Promise.all([native.close(), fanning.close()]);
  });
});
