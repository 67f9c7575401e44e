import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../telemetry/logger.js';
import { WebhookSender, type WebhookEndpoint } from './sender.js';
import { verifyWebhook } from './signature.js';

const SECRET = `whsec_${Buffer.from('sender test secret, 32 bytes long').toString('base64')}`;
const log = createLogger('silent');
let server: Server | undefined;

afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

/** A receiver answering the given statuses in turn (the last one for every later request). */
async function receiver(statuses: number[]): Promise<{ url: string; got: { headers: IncomingHttpHeaders; body: string }[] }> {
  const got: { headers: IncomingHttpHeaders; body: string }[] = [];
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(statuses[Math.min(got.length - 1, statuses.length - 1)] as number).end();
    });
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`, got };
}

describe('WebhookSender', () => {
  it('retries a 503 with the same webhook-id, each attempt validly signed, and reports the attempts', async () => {
    const r = await receiver([503, 503, 200]);
    const sender = new WebhookSender({ endpoints: [{ url: r.url, secret: SECRET, events: [] }], log, maxAttempts: 5, initialBackoffMs: 10, timeoutMs: 2_000 });
    const [result] = await Promise.all(sender.send('batch.completed', { id: 'batch_1' }));
    expect(result).toMatchObject({ ok: true, attempts: 3, status: 200 });
    expect(new Set(r.got.map((g) => g.headers['webhook-id'])).size).toBe(1);
    for (const g of r.got) expect(verifyWebhook(SECRET, g.headers, g.body).ok).toBe(true);
    await sender.close();
  });

  it('stops at a 4xx the receiver refuses and reports the one attempt it made', async () => {
    const r = await receiver([400]);
    const sender = new WebhookSender({ endpoints: [{ url: r.url, secret: SECRET, events: [] }], log, maxAttempts: 5, initialBackoffMs: 10, timeoutMs: 2_000 });
    const [result] = await Promise.all(sender.send('batch.completed', { id: 'batch_2' }));
    expect(r.got).toHaveLength(1);
    expect(result).toMatchObject({ ok: false, attempts: 1, status: 400 });
    await sender.close();
  });

  it('says of one attempt whether another is worth making: yes for 5xx, 408, 429 and no answer, no for another 4xx', async () => {
    const r = await receiver([503, 408, 429, 404, 204]);
    const sender = new WebhookSender({ endpoints: [{ url: r.url, secret: SECRET, events: ['batch.completed'] }], log, maxAttempts: 5, initialBackoffMs: 10, timeoutMs: 2_000 });
    const endpoint = sender.targets('batch.completed')[0] as WebhookEndpoint;
    expect(sender.targets('budget.threshold')).toEqual([]);
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await sender.attempt(endpoint, 'msg_1', '{}'));
    expect(results.map((x) => [x.status, x.ok, x.retry])).toEqual([[503, false, true], [408, false, true], [429, false, true], [404, false, false], [204, true, false]]);
    expect(await sender.attempt({ url: 'http://127.0.0.1:1/hook', secret: SECRET, events: [] }, 'msg_2', '{}')).toMatchObject({ ok: false, retry: true, error: expect.any(String) });
    expect(new Set(r.got.map((g) => g.headers['webhook-id']))).toEqual(new Set(['msg_1']));
  });

  it('never logs a receiver URL’s path or query, where tokens live: its origin and a fingerprint instead', async () => {
    const lines: string[] = [];
    const capture = createLogger('debug', new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(chunk.toString()), cb()) }));
    // Nothing listens on port 9: every attempt fails, and is logged, then the give-up.
    const url = 'http://user:pass-secret@127.0.0.1:9/services/T0/B0/path-token-secret?token=query-token-secret';
    const sender = new WebhookSender({ endpoints: [{ url, secret: SECRET, events: [] }], log: capture, maxAttempts: 2, initialBackoffMs: 1, timeoutMs: 2_000 });
    const [result] = await Promise.all(sender.send('budget.threshold_crossed', {}));
    expect(result).toMatchObject({ ok: false, attempts: 2 });
    await sender.close();
    await expect.poll(() => lines.join('').includes('webhook delivery gave up')).toBe(true);
    const logged = lines.join('');
    expect(logged).toContain('webhook delivery failed');
    expect(logged).not.toMatch(/secret/);
    expect(logged).toContain(`http://127.0.0.1:9 #${createHash('sha256').update(url).digest('hex').slice(0, 8)}`);
  });
});
