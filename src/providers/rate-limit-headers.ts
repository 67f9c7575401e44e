// When a rate-limited upstream frees up, from the headers providers send beside a 429 when they send
// no Retry-After: OpenAI's (and Groq's, Together's, OpenRouter's…) `x-ratelimit-reset-requests` /
// `-tokens`, durations such as `1s`, `6m0s`, `20ms`, `2m59.56s`; Anthropic's
// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset`, RFC 3339 times. The
// limit that ran out (its `remaining` at 0) decides; with none known to have, the soonest reset.
import { first } from './errors.js';

type Headers = Record<string, string | string[] | undefined>;

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };
const PART = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/g;

/** A Go-style duration (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) or plain seconds, in ms; undefined otherwise. */
export function parseDuration(value: string): number | undefined {
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  if (!/^(\d+(\.\d+)?(ms|us|µs|ns|h|m|s))+$/.test(v)) return undefined;
  let ms = 0;
  for (const m of v.matchAll(PART)) ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return ms;
}

/** Milliseconds until the exhausted rate limit resets, from the headers above; undefined without them. */
export function rateLimitResetMs(headers: Headers, now = Date.now()): number | undefined {
  const limits: { reset: number; exhausted: boolean }[] = [];
  for (const kind of ['requests', 'tokens']) {
    const reset = first(headers[`x-ratelimit-reset-${kind}`]);
    const ms = reset === undefined ? undefined : parseDuration(reset);
    if (ms !== undefined) limits.push({ reset: ms, exhausted: first(headers[`x-ratelimit-remaining-${kind}`]) === '0' });
  }
  for (const kind of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
    const reset = first(headers[`anthropic-ratelimit-${kind}-reset`]);
    const at = reset === undefined ? Number.NaN : Date.parse(reset);
    if (!Number.isNaN(at)) limits.push({ reset: Math.max(0, at - now), exhausted: first(headers[`anthropic-ratelimit-${kind}-remaining`]) === '0' });
  }
  if (limits.length === 0) return undefined;
  const exhausted = limits.filter((l) => l.exhausted);
  const ms = exhausted.length > 0 ? Math.max(...exhausted.map((l) => l.reset)) : Math.min(...limits.map((l) => l.reset));
  return Math.ceil(ms);
}
