// Spans reach an OTLP/HTTP collector in batches of at most 64 (OTEL_BSP_MAX_EXPORT_BATCH_SIZE
// overrides): a collector on loopback counts what each export carried.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { endSpan, startSpan, Tracing } from './tracing.js';

interface Collector {
  url: string;
  batches: number[];
  server: Server;
}

async function collector(): Promise<Collector> {
  const batches: number[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const parsed = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: unknown[] }> }> };
      batches.push(parsed.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)).length);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, batches, server };
}

const settings = (url: string) => ({ enabled: true, service_name: 'test', otlp_endpoint: url, sampler: 'always_on' });

async function exportSpans(n: number): Promise<number[]> {
  const c = await collector();
  const tracing = Tracing.start(settings(c.url), 'test');
  try {
    for (let i = 0; i < n; i++) endSpan(startSpan(`span-${i}`, undefined).span);
    await tracing.shutdown(); // flushes what is queued
    return c.batches;
  } finally {
    c.server.close();
  }
}

describe('OTLP export batching', () => {
  const saved = process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE;
  afterEach(() => {
    if (saved === undefined) delete process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE;
    else process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE = saved;
    Tracing.start({ enabled: false, service_name: 'test', sampler: 'always_on' }, 'test');
  });

  it('sends every span, at most 64 per export', async () => {
    delete process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE;
    const batches = await exportSpans(150);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(150);
    expect(Math.max(...batches)).toBeLessThanOrEqual(64);
    expect(batches.length).toBeGreaterThanOrEqual(3);
  });

  it('takes the batch size from OTEL_BSP_MAX_EXPORT_BATCH_SIZE when it is set', async () => {
    process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE = '200';
    const batches = await exportSpans(150);
    expect(batches).toEqual([150]);
  });
});
