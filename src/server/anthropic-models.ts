// `GET /v1/models` and `GET /v1/models/{id}` in Anthropic's shape, for a caller that sends
// `anthropic-version` (the Anthropic SDK always does): its `client.models.list()` pages by
// `limit` / `after_id` / `before_id` and reads `has_more`, `first_id`, `last_id`; each model is
// `{type: "model", id, display_name, created_at}` with an RFC 3339 time. The gateway knows no display
// name of its own, so a model's is its id.
import type { ModelInfo } from '../routing/catalog.js';
import { GatewayError } from './errors.js';

export interface AnthropicModelInfo {
  type: 'model';
  id: string;
  display_name: string;
  created_at: string;
}

export interface AnthropicModelPage {
  data: AnthropicModelInfo[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 1000;

export function anthropicModel(m: ModelInfo): AnthropicModelInfo {
  return { type: 'model', id: m.id, display_name: m.id, created_at: new Date(m.created * 1000).toISOString() };
}

/**
 * One page of the models, in the catalog's order: the `limit` after `after_id`, or the `limit`
 * just before `before_id` (Anthropic's paging; an id not in the list gives an empty page).
 */
export function anthropicModelPage(models: readonly ModelInfo[], query: Record<string, unknown>): AnthropicModelPage {
  const limit = parseLimit(query.limit);
  const after = typeof query.after_id === 'string' ? query.after_id : undefined;
  const before = typeof query.before_id === 'string' ? query.before_id : undefined;
  if (after !== undefined && before !== undefined) {
    throw new GatewayError('invalid_request', { message: 'Send at most one of `after_id` and `before_id`.', param: 'before_id' });
  }
  let start = 0;
  let end = models.length;
  if (after !== undefined) {
    const at = models.findIndex((m) => m.id === after);
    start = at < 0 ? models.length : at + 1;
    end = Math.min(models.length, start + limit);
  } else if (before !== undefined) {
    const at = models.findIndex((m) => m.id === before);
    end = at < 0 ? 0 : at;
    start = Math.max(0, end - limit);
  } else {
    end = Math.min(models.length, limit);
  }
  const data = models.slice(start, end).map(anthropicModel);
  // More in the direction being paged: after the page going forward, before it going back.
  const has_more = before !== undefined ? start > 0 : end < models.length;
  return { data, has_more, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null };
}

function parseLimit(raw: unknown): number {
  if (raw === undefined) return DEFAULT_LIMIT;
  const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT) {
    throw new GatewayError('invalid_value', { message: `\`limit\` must be an integer from 1 to ${MAX_LIMIT}.`, param: 'limit' });
  }
  return n;
}
