import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../telemetry/logger.js';
import { WebhookSender } from './sender.js';
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
});
