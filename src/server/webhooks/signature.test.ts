import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhook } from './signature.js';

const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

describe('Standard Webhooks signatures', () => {
  it('matches the reference vector of the Standard Webhooks spec', () => {
    // From the standard-webhooks repository's test suite.
    const headers = signWebhook(secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', '{"test": 2432232314}', 1614265330 * 1000);
    expect(headers['webhook-signature']).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('accepts a fresh, untampered webhook', () => {
    const body = '{"type":"ping"}';
    const h = signWebhook(secret, 'msg_1', body);
    expect(verifyWebhook(secret, { ...h }, body)).toMatchObject({ ok: true, webhook: { id: 'msg_1' } });
  });

  it('accepts one valid signature among several (secret rotation)', () => {
    const body = '{}';
    const h = signWebhook(secret, 'msg_2', body);
    expect(verifyWebhook(secret, { ...h, 'webhook-signature': `v1,AAAA ${h['webhook-signature']}` }, body).ok).toBe(true);
  });

  it.each([
    ['a tampered body', (h: Record<string, string>) => [h, '{"type":"pong"}'] as const, 'bad_signature'],
    ['a changed id', (h: Record<string, string>) => [{ ...h, 'webhook-id': 'msg_other' }, '{"type":"ping"}'] as const, 'bad_signature'],
    ['another secret', (h: Record<string, string>) => [{ ...h, 'webhook-signature': signWebhook('whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldA==', 'msg_3', '{"type":"ping"}')['webhook-signature'] }, '{"type":"ping"}'] as const, 'bad_signature'],
    ['no signature', (h: Record<string, string>) => [{ ...h, 'webhook-signature': '' }, '{"type":"ping"}'] as const, 'missing_headers'],
    ['a v2 signature only', (h: Record<string, string>) => [{ ...h, 'webhook-signature': h['webhook-signature']?.replace('v1,', 'v2,') ?? '' }, '{"type":"ping"}'] as const, 'bad_signature'],
  ])('rejects %s', (_name, mutate, reason) => {
    const h = signWebhook(secret, 'msg_3', '{"type":"ping"}');
    const [headers, body] = mutate({ ...h });
    expect(verifyWebhook(secret, headers, body)).toEqual({ ok: false, reason });
  });

  it('rejects a timestamp more than five minutes away, either side', () => {
    const body = '{}';
    const now = Date.now();
    expect(verifyWebhook(secret, { ...signWebhook(secret, 'old', body, now - 301_000) }, body, 300, now)).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(secret, { ...signWebhook(secret, 'new', body, now + 301_000) }, body, 300, now)).toEqual({ ok: false, reason: 'stale' });
    expect(verifyWebhook(secret, { ...signWebhook(secret, 'ok', body, now - 299_000) }, body, 300, now).ok).toBe(true);
  });
});
