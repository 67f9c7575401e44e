// Client-side helpers for streamed chat requests in integration tests.
import { request } from 'undici';
import { expect } from 'vitest';

/** A streamed chat request read until `events` SSE events arrived, then abandoned by the client. */
export async function abandonStream(url: string, key: string, body: Record<string, unknown>, events = 3): Promise<{ requestId: string; received: string }> {
  const controller = new AbortController();
  const res = await request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal: controller.signal,
  });
  expect(res.statusCode).toBe(200);
  let received = '';
  try {
    for await (const chunk of res.body) {
      received += (chunk as Buffer).toString();
      if (received.split('\n\n').length > events) break;
    }
  } finally {
    controller.abort();
  }
  return { requestId: res.headers['x-request-id'] as string, received };
}
