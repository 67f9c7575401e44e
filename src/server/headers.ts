// The x-inferenceflow-* response headers, one set of names used by every route (DESIGN.md table).
import type { ResponseFacts } from '../gateway/context.js';

export const FACT_HEADERS = {
  provider: 'x-inferenceflow-provider',
  model: 'x-inferenceflow-model',
  deployment: 'x-inferenceflow-deployment',
  latency: 'x-inferenceflow-latency-ms',
  cost: 'x-inferenceflow-cost-usd',
  cache: 'x-inferenceflow-cache',
  similarity: 'x-inferenceflow-similarity',
  route: 'x-inferenceflow-route',
  passes: 'x-inferenceflow-passes',
} as const;

export function formatCost(usd: number): string {
  return usd === 0 ? '0' : usd.toFixed(8).replace(/0+$/, '').replace(/\.$/, '');
}

/** Longest name (model, provider, deployment) a response header carries, characters. */
export const MAX_HEADER_NAME = 512;

/** Anything but tab and printable ASCII: what a header value should not carry (Node refuses controls and non-Latin-1). */
const NOT_HEADER_SAFE = /[^\t\x20-\x7e]/;

/**
 * A name for a header: as it is when a header can carry it, else percent-encoded whole
 * (encodeURIComponent), so a passthrough model named "модель" or one with a control character in it
 * is answered instead of failing the response (Node throws on such a header value).
 */
export function headerValue(v: string): string {
  // A name past MAX_HEADER_NAME is cut there: a passthrough model name of 100 KB made a response
  // header no client reads (undici's limit for all of them is 16 KB), so the answer was lost.
  if (v.length > MAX_HEADER_NAME) v = v.slice(0, MAX_HEADER_NAME);
  return NOT_HEADER_SAFE.test(v) ? escapeText(v) : v;
}

/**
 * encodeURIComponent of any string. A lone UTF-16 surrogate (JSON's "\ud800" arrives as one) makes
 * encodeURIComponent throw; it is replaced with U+FFFD first, surrogate pairs (emoji) kept.
 */
export function escapeText(v: string): string {
  return encodeURIComponent((v as unknown as { toWellFormed(): string }).toWellFormed());
}

/**
 * Headers describing who answered and what it took. `final` false for a stream's opening headers;
 * `latency` 'known' leaves the latency out when no upstream was called (an error answered before any
 * attempt), where an answer always carries it (0 for a cache hit).
 */
export function factHeaders(facts: ResponseFacts, final = true, latency: 'always' | 'known' = 'always'): Record<string, string> {
  const h: Record<string, string> = {};
  if (facts.provider) h[FACT_HEADERS.provider] = headerValue(facts.provider);
  if (facts.model) h[FACT_HEADERS.model] = headerValue(facts.model);
  if (facts.deployment) h[FACT_HEADERS.deployment] = headerValue(facts.deployment);
  if (latency === 'always' || facts.latencyMs !== undefined) h[FACT_HEADERS.latency] = String(Math.round(facts.latencyMs ?? 0));
  if (final) h[FACT_HEADERS.cost] = formatCost(facts.costUsd);
  if (facts.cache) h[FACT_HEADERS.cache] = facts.cache;
  if (facts.similarity !== undefined) h[FACT_HEADERS.similarity] = facts.similarity.toFixed(4);
  if (facts.route) h[FACT_HEADERS.route] = headerValue(facts.route);
  if (facts.passes !== undefined) h[FACT_HEADERS.passes] = String(facts.passes);
  if (facts.headers) Object.assign(h, facts.headers);
  return h;
}

/** Trailers of a stream: the totals known only at its end. */
export function streamTrailers(facts: ResponseFacts): Record<string, string> {
  return { [FACT_HEADERS.cost]: formatCost(facts.costUsd), [FACT_HEADERS.latency]: String(Math.round(facts.latencyMs ?? 0)) };
}
