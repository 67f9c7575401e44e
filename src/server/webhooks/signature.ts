// Standard Webhooks signatures (standardwebhooks.com): HMAC-SHA256 over `${id}.${timestamp}.${body}`,
// sent as `webhook-signature: v1,<base64>` (several space-separated signatures allowed, for secret
// rotation), with `webhook-id` and `webhook-timestamp` (Unix seconds). Compared in constant time;
// a timestamp further than the tolerance from now is refused, so a captured request goes stale.
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface WebhookHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** A `whsec_` secret is base64 key bytes; any other string is used as UTF-8 bytes. */
export function secretBytes(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret, 'utf8');
}

export function signPayload(secret: string, id: string, timestampS: number, body: string | Buffer): string {
  const mac = createHmac('sha256', secretBytes(secret));
  mac.update(`${id}.${timestampS}.`);
  mac.update(body);
  return `v1,${mac.digest('base64')}`;
}

export function signWebhook(secret: string, id: string, body: string, now = Date.now()): WebhookHeaders {
  const ts = Math.floor(now / 1000);
  return { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signPayload(secret, id, ts, body) };
}

export type VerifyFailure = 'missing_headers' | 'bad_timestamp' | 'stale' | 'bad_signature';

export interface VerifiedWebhook {
  id: string;
  timestampS: number;
}

/** Checks a received webhook; returns why it fails, or its id and timestamp. */
export function verifyWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: Buffer | string,
  toleranceS = 300,
  now = Date.now(),
): { ok: true; webhook: VerifiedWebhook } | { ok: false; reason: VerifyFailure } {
  const one = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const id = one('webhook-id');
  const ts = one('webhook-timestamp');
  const sig = one('webhook-signature');
  if (!id || !ts || !sig) return { ok: false, reason: 'missing_headers' };
  if (!/^\d{1,12}$/.test(ts)) return { ok: false, reason: 'bad_timestamp' };
  const timestampS = Number(ts);
  if (Math.abs(now / 1000 - timestampS) > toleranceS) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(signPayload(secret, id, timestampS, body).slice(3), 'base64');
  let match = false;
  for (const part of sig.split(' ')) {
    const [version, value] = part.split(',', 2);
    if (version !== 'v1' || !value) continue;
    const got = Buffer.from(value, 'base64');
    // Every candidate is compared (no early exit), each in constant time.
    if (got.length === expected.length && timingSafeEqual(got, expected)) match = true;
  }
  return match ? { ok: true, webhook: { id, timestampS } } : { ok: false, reason: 'bad_signature' };
}
