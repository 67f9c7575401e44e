import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../routing/catalog.js';
import { anthropicModel, anthropicModelPage } from './anthropic-models.js';

const models: ModelInfo[] = ['a', 'b', 'c', 'd', 'e'].map((id, i) => ({ id, object: 'model', created: 1_700_000_000 + i, owned_by: 'x' }));
const ids = (p: { data: { id: string }[] }) => p.data.map((m) => m.id);

describe('Anthropic model list', () => {
  it('describes a model as Anthropic does', () => {
    expect(anthropicModel(models[0] as ModelInfo)).toEqual({ type: 'model', id: 'a', display_name: 'a', created_at: '2023-11-14T22:13:20.000Z' });
  });

  it('pages forward by after_id and back by before_id', () => {
    expect(anthropicModelPage(models, {})).toMatchObject({ has_more: false, first_id: 'a', last_id: 'e' });
    const first = anthropicModelPage(models, { limit: '2' });
    expect([ids(first), first.has_more, first.first_id, first.last_id]).toEqual([['a', 'b'], true, 'a', 'b']);
    const second = anthropicModelPage(models, { limit: '2', after_id: 'b' });
    expect([ids(second), second.has_more]).toEqual([['c', 'd'], true]);
    const last = anthropicModelPage(models, { limit: '2', after_id: 'd' });
    expect([ids(last), last.has_more]).toEqual([['e'], false]);
    const back = anthropicModelPage(models, { limit: '2', before_id: 'd' });
    expect([ids(back), back.has_more]).toEqual([['b', 'c'], true]);
    const start = anthropicModelPage(models, { limit: '2', before_id: 'b' });
    expect([ids(start), start.has_more]).toEqual([['a'], false]);
    expect(anthropicModelPage(models, { after_id: 'zzz' })).toEqual({ data: [], has_more: false, first_id: null, last_id: null });
  });

  it('refuses a bad limit and both cursors at once', () => {
    for (const limit of ['0', '1001', 'ten', '2.5']) expect(() => anthropicModelPage(models, { limit })).toThrow(/limit/);
    expect(() => anthropicModelPage(models, { after_id: 'a', before_id: 'c' })).toThrow(/at most one/);
  });
});
