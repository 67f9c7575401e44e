// Outgoing webhooks, signed in the Standard Webhooks format and retried with exponential backoff
// and jitter on network errors, 5xx and 429. Used for budget thresholds; the batch-jobs capability
// sends `batch.completed` through the same sender. Deliveries run in the background; `close` waits
// (up to a deadline) for those under way.
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import type { Logger } from 'pino';
import { signWebhook } from './signature.js';

export interface WebhookEndpoint {
  url: string;
  secret: string;
  /** Event types to send; empty = all. */
  events: string[];
}

export interface WebhookSenderOptions {
  endpoints: WebhookEndpoint[];
  log: Logger;
  maxAttempts: number;
  initialBackoffMs: number;
  timeoutMs: number;
}

export interface DeliveryResult {
  url: string;
  ok: boolean;
  attempts: number;
  status?: number;
}

export class WebhookSender {
  private readonly inFlight = new Set<Promise<DeliveryResult>>();
  private closed = false;

  constructor(private readonly opts: WebhookSenderOptions) {}

  get configured(): boolean {
    return this.opts.endpoints.length > 0;
  }

  /** Queues `type` to every endpoint that wants it; returns the deliveries (tests await them). */
  send(type: string, data: unknown): Promise<DeliveryResult>[] {
    if (this.closed) return [];
    const body = JSON.stringify({ type, timestamp: new Date().toISOString(), data });
    const id = `msg_${randomUUID()}`;
    return this.opts.endpoints
      .filter((e) => e.events.length === 0 || e.events.includes(type))
      .map((e) => {
        const p = this.deliver(e, id, body).finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
        return p;
      });
  }

  private async deliver(e: WebhookEndpoint, id: string, body: string): Promise<DeliveryResult> {
    let status: number | undefined;
    let attempts = 0;
    for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
      attempts = attempt;
      try {
        // Signed per attempt: the same id (receivers dedupe on it) with a fresh timestamp.
        const res = await request(e.url, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', 'user-agent': 'inferenceflow-webhooks', ...signWebhook(e.secret, id, body) },
          headersTimeout: this.opts.timeoutMs,
          bodyTimeout: this.opts.timeoutMs,
        });
        status = res.statusCode;
        await res.body.dump();
        if (status >= 200 && status < 300) return { url: e.url, ok: true, attempts: attempt, status };
        if (status < 500 && status !== 429 && status !== 408) break; // the receiver refuses it: retrying will not help
      } catch (err) {
        this.opts.log.debug({ url: e.url, attempt, err: (err as Error).message }, 'webhook delivery failed');
      }
      if (attempt < this.opts.maxAttempts && !this.closed) {
        const backoff = this.opts.initialBackoffMs * 2 ** (attempt - 1);
        await new Promise((r) => setTimeout(r, backoff / 2 + Math.random() * (backoff / 2)));
      }
    }
    this.opts.log.warn({ url: e.url, id, status, attempts }, 'webhook delivery gave up');
    return { url: e.url, ok: false, attempts, status };
  }

  async close(deadlineMs = 5_000): Promise<void> {
    this.closed = true;
    if (this.inFlight.size === 0) return;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, deadlineMs).unref())]);
  }
}
