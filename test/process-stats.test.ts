// GET /debug/process, which the soak benchmark samples: this process's memory, event-loop delay and
// open descriptors, behind the same authentication as the API.
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

interface Stats {
  pid: number;
  rss_bytes: number;
  heap_used_bytes: number;
  open_fds: number | null;
  event_loop_delay_ms: { window_s: number; samples: number; p50: number; p99: number; max: number };
  active_resources: Record<string, number>;
}

describe('GET /debug/process', () => {
  let server: RunningServer;
  const auth = { authorization: 'Bearer stats-token-123' };
  beforeAll(async () => {
    server = await startTestGateway({ env: { TRUTHGPT_API_TOKEN: 'stats-token-123' } });
  });
  afterAll(() => server.close());

  const get = async (query = '', headers: Record<string, string> = auth) => {
    const res = await request(`${server.url}/debug/process${query}`, { headers });
    return { status: res.statusCode, body: (await res.body.json()) as Stats };
  };

  it('needs the API token', async () => {
    expect((await get('', {})).status).toBe(401);
  });

  it("reports this process's memory, descriptors and event-loop delay, and starts a new window on reset", async () => {
    const first = await get();
    expect(first.status).toBe(200);
    expect(first.body.pid).toBe(process.pid);
    const { rss } = process.memoryUsage();
    expect(first.body.rss_bytes).toBeGreaterThan(rss / 4);
    expect(first.body.rss_bytes).toBeLessThan(rss * 4);
    if (process.platform === 'linux') expect(first.body.open_fds).toBeGreaterThan(3);
    // Block the loop for a measurable while: the histogram must see it.
    await new Promise((r) => setTimeout(r, 50));
    const until = Date.now() + 120;
    while (Date.now() < until);
    await new Promise((r) => setTimeout(r, 50));
    const blocked = await get('?reset=true');
    expect(blocked.body.event_loop_delay_ms.samples).toBeGreaterThan(0);
    expect(blocked.body.event_loop_delay_ms.max).toBeGreaterThanOrEqual(100);
    const after = await get();
    expect(after.body.event_loop_delay_ms.max).toBeLessThan(blocked.body.event_loop_delay_ms.max);
    expect(after.body.active_resources.TCPSocketWrap ?? after.body.active_resources.TCPServerWrap).toBeGreaterThan(0);
  });
});
