// A completion-webhook notifier for the batch tests: one endpoint that takes every event at once
// (204) and records each attempt, as the outbox and the runner hand it over.
import type { CompletionNotifier } from '../../src/batching/jobs/outbox.js';
import { runId } from './services.js';

export interface RecordedAttempt {
  /** The delivery id (the outbox row's). */
  id: string;
  type: string;
  data: unknown;
}

/** Its own URL unless given one (outbox rows are per endpoint); every attempt lands in `sent`. */
export function recordingNotifier(url = `http://receiver-${runId()}.invalid/hook`): CompletionNotifier & { sent: RecordedAttempt[] } {
  const sent: RecordedAttempt[] = [];
  return {
    sent,
    targets: () => [{ url, secret: 'unused', events: [] }],
    attempt: async (_endpoint, id, body) => {
      const event = JSON.parse(body) as { type?: string; data?: unknown };
      sent.push({ id, type: event.type ?? '', data: event.data });
      return { ok: true, status: 204, retry: false };
    },
    backoffMs: () => 10,
    maxAttempts: 3,
    timeoutMs: 1_000,
  };
}
