// Outgoing webhooks, signed in the Standard Webhooks format and retried with exponential backoff
// and jitter on network errors, 5xx, 408 and 429. Budget thresholds go through `send` (delivered in
// the background, retried in memory; `close` waits, up to a deadline, for those under way). Batch
// completion events are durable instead: the batch runner stores them in its outbox and delivers each
// with `attempt`, `backoffMs` and `maxAttempts` (src/batching/jobs/outbox.ts).
import { createHash, randomUUID } from 'node:crypto';
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

/** What one POST to a receiver came to. */
export interface AttemptResult {
  /** The receiver answered 2xx. */
  ok: boolean;
  status?: number;
  /** A network error or timeout, when there was no answer. */
  error?: string;
  /** Worth another attempt: no answer, 5xx, 408 or 429. Any other answer is the receiver's refusal. */
  retry: boolean;
}

/**
 * An endpoint as logs name it: its origin and a fingerprint of its whole URL (the first 8 hex digits
 * of its SHA-256), never the URL itself — receivers' URLs often carry a token in the query or in the
 * path (Slack's do), and userinfo can hold a password. The fingerprint tells endpoints of one origin
 * apart: `printf %s "$url" | sha256sum`.
 */
export function endpointForLog(url: string): string {
  const fingerprint = createHash('sha256').update(url).digest('hex').slice(0, 8);
  let origin = 'invalid-url';
  try {
    origin = new URL(url).origin;
  } catch {
    // Named by its fingerprint alone.
  }
  return `${origin} #${fingerprint}`;
}

/** Longest wait between two attempts, however many came before. */
const MAX_BACKOFF_MS = 3_600_000;

export class WebhookSender {
  private readonly inFlight = new Set<Promise<DeliveryResult>>();
  private closed = false;

  constructor(private readonly opts: WebhookSenderOptions) {}

  get configured(): boolean {
    return this.opts.endpoints.length > 0;
  }

  get maxAttempts(): number {
    return this.opts.maxAttempts;
  }

  /** How long one attempt may wait for the answer's headers, and again for its body. */
  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  /** The endpoints that take events of `type`; every endpoint without one. */
  targets(type?: string): WebhookEndpoint[] {
    return this.opts.endpoints.filter((e) => type === undefined || e.events.length === 0 || e.events.includes(type));
  }

  /** The wait after failed attempt number `attempt` (1-based): doubling from `initialBackoffMs`, half of it jitter, at most an hour. */
  backoffMs(attempt: number): number {
    const backoff = Math.min(MAX_BACKOFF_MS, this.opts.initialBackoffMs * 2 ** (attempt - 1));
    return backoff / 2 + Math.random() * (backoff / 2);
  }

  /** Queues `type` to every endpoint that wants it; returns the deliveries (tests await them). */
  send(type: string, data: unknown): Promise<DeliveryResult>[] {
    if (this.closed) return [];
    const body = JSON.stringify({ type, timestamp: new Date().toISOString(), data });
    const id = `msg_${randomUUID()}`;
    return this.targets(type).map((e) => {
      const p = this.deliver(e, id, body).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
      return p;
    });
  }

  /**
   * One POST of `body` to `e`, signed with a fresh timestamp under message id `id` (the same id on
   * every attempt of one message, so receivers dedupe on it).
   */
  async attempt(e: WebhookEndpoint, id: string, body: string, signal?: AbortSignal): Promise<AttemptResult> {
    try {
      const res = await request(e.url, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'user-agent': 'inferenceflow-webhooks', ...signWebhook(e.secret, id, body) },
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        ...(signal ? { signal } : {}),
      });
      const status = res.statusCode;
      await res.body.dump();
      if (status >= 200 && status < 300) return { ok: true, status, retry: false };
      // Any other 4xx is the receiver refusing it: retrying will not help.
      return { ok: false, status, retry: status >= 500 || status === 429 || status === 408 };
    } catch (err) {
      this.opts.log.debug({ endpoint: endpointForLog(e.url), id, err: (err as Error).message }, 'webhook delivery failed');
      return { ok: false, error: (err as Error).message, retry: true };
    }
  }

  private async deliver(e: WebhookEndpoint, id: string, body: string): Promise<DeliveryResult> {
    let status: number | undefined;
    let attempts = 0;
    for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
      attempts = attempt;
      const result = await this.attempt(e, id, body);
      status = result.status;
      if (result.ok) return { url: e.url, ok: true, attempts: attempt, status };
      if (!result.retry) break;
      if (attempt < this.opts.maxAttempts && !this.closed) await new Promise((r) => setTimeout(r, this.backoffMs(attempt)));
    }
    this.opts.log.warn({ endpoint: endpointForLog(e.url), id, status, attempts }, 'webhook delivery gave up');
    return { url: e.url, ok: false, attempts, status };
  }

  async close(deadlineMs = 5_000): Promise<void> {
    this.closed = true;
    if (this.inFlight.size === 0) return;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, deadlineMs).unref())]);
  }
}
