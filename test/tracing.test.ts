// Traces as a collector would receive them: a SERVER span per request continuing the caller's
// traceparent, child spans for auth, route and each provider attempt, and the attempt's own W3C
// traceparent arriving at the upstream. Spans are caught with an in-memory exporter.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatRequest, ChatResult } from '../src/canonical/chat.js';
import type { RunningServer } from '../src/cli/serve.js';
import { composeStages } from '../src/gateway/pipeline.js';
import { UpstreamHttp } from '../src/providers/http.js';
import { SimulatorProvider, createSimulatorProvider } from '../src/providers/simulator.js';
import type { CallOptions } from '../src/providers/types.js';
import { tracedStage } from '../src/telemetry/tracing.js';
import { startTestGateway } from './helpers/gateway.js';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

/** A simulator whose chat first calls a real HTTP upstream stand-in through UpstreamHttp. */
class RelayProvider extends SimulatorProvider {
  constructor(private readonly http: UpstreamHttp) {
    super('relay', createSimulatorProvider('relay').options);
  }
  override async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    await this.http.json('POST', '/v1/chat/completions', { model: req.model }, opts);
    return super.chat(req, opts);
  }
  override async close() {
    await super.close();
  }
}


/** An upstream stand-in that records the headers it receives, and a gateway relaying to it. */
async function startRelay(opts: { tokens?: string[]; spanExporter?: InMemorySpanExporter }) {
  const headers: IncomingHttpHeaders[] = [];
  const upstream = createServer((req, res) => {
    headers.push(req.headers);
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const http = new UpstreamHttp({ provider: 'relay', baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1` });
  const server = await startTestGateway({
    config: {
      providers: { relay: { type: 'simulator' } },
      models: [{ name: 'chat', deployments: [{ provider: 'relay', model: 'relay-1' }] }],
      ...(opts.tokens ? { auth: { tokens: opts.tokens } } : {}),
    },
    providers: new Map([['relay', new RelayProvider(http)]]),
    spanExporter: opts.spanExporter,
  });
  return {
    server,
    headers,
    close: async () => {
      await server.close();
      await new Promise((r) => upstream.close(r));
    },
  };
}

describe('OpenTelemetry traces', () => {
  const exporter = new InMemorySpanExporter();
  let upstreamHeaders: IncomingHttpHeaders[] = [];
  let server: RunningServer;
  let relay: Awaited<ReturnType<typeof startRelay>>;

  beforeAll(async () => {
    relay = await startRelay({ tokens: ['trace-token-1'], spanExporter: exporter });
    server = relay.server;
    upstreamHeaders = relay.headers;
  });
  afterAll(() => relay.close());
  beforeEach(() => {
    exporter.reset();
    upstreamHeaders.length = 0;
  });

  async function chat(headers: Record<string, string> = {}) {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer trace-token-1', ...headers },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.text();
    return res;
  }

  function spansOfRequest(): { server: ReadableSpan; byName: Map<string, ReadableSpan> } {
    const spans = exporter.getFinishedSpans();
    const serverSpan = spans.find((s) => s.name === 'POST /v1/chat/completions');
    if (!serverSpan) throw new Error(`no server span among ${spans.map((s) => s.name).join(', ')}`);
    return { server: serverSpan, byName: new Map(spans.map((s) => [s.name, s])) };
  }

  it('sends the upstream a valid traceparent of the provider attempt span, in the request trace', async () => {
    expect((await chat()).status).toBe(200);
    await expect.poll(() => exporter.getFinishedSpans().some((s) => s.name === 'POST /v1/chat/completions')).toBe(true);
    const { server: root, byName } = spansOfRequest();
    const attempt = byName.get('provider relay');
    const route = byName.get('route');
    const auth = byName.get('auth');
    expect(attempt && route && auth).toBeTruthy();
    const traceId = root.spanContext().traceId;
    for (const s of [attempt, route, auth]) expect(s?.spanContext().traceId).toBe(traceId);
    expect(auth?.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    expect(route?.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    expect(attempt?.parentSpanContext?.spanId).toBe(route?.spanContext().spanId);
    expect(attempt?.attributes['inferenceflow.deployment']).toBe('relay/relay-1');
    // The pipeline's stages span their part too, in the request's trace.
    for (const stage of ['limits', 'scaling']) expect(byName.get(stage)?.parentSpanContext?.spanId, stage).toBe(root.spanContext().spanId);
    expect(root.attributes['http.response.status_code']).toBe(200);
    expect(root.attributes['inferenceflow.provider']).toBe('relay');

    expect(upstreamHeaders).toHaveLength(1);
    const sent = String(upstreamHeaders[0]?.traceparent);
    const m = TRACEPARENT.exec(sent);
    expect(m, sent).not.toBeNull();
    expect(m?.[1]).toBe(traceId);
    expect(m?.[2]).toBe(attempt?.spanContext().spanId);
  });

  it("continues the caller's trace when the request carries a traceparent", async () => {
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    expect((await chat({ traceparent: `00-${callerTrace}-${callerSpan}-01`, baggage: 'user.email=alice%40corp.example' })).status).toBe(200);
    await expect.poll(() => exporter.getFinishedSpans().some((s) => s.name === 'POST /v1/chat/completions')).toBe(true);
    const { server: root } = spansOfRequest();
    expect(root.spanContext().traceId).toBe(callerTrace);
    expect(root.parentSpanContext?.spanId).toBe(callerSpan);
    expect(String(upstreamHeaders[0]?.traceparent)).toContain(callerTrace);
    // The caller's baggage (user ids, emails) stays here: a provider gets the trace's headers only.
    expect(upstreamHeaders[0]?.baggage).toBeUndefined();
  });

  it('marks the server span and the auth span failed when the key is refused', async () => {
    expect((await chat({ authorization: 'Bearer not-the-token' })).status).toBe(401);
    await expect.poll(() => exporter.getFinishedSpans().some((s) => s.name === 'POST /v1/chat/completions')).toBe(true);
    const { byName } = spansOfRequest();
    expect(byName.get('auth')?.status.code).toBe(2); // SpanStatusCode.ERROR
    expect(upstreamHeaders).toHaveLength(0);
  });

  it('wraps a chat stage in a span that lasts until its stream ends', async () => {
    const stage = tracedStage('cache', async (ctx, req, next) => next(ctx, req));
    const handler = composeStages([stage], async () => ({
      kind: 'stream',
      stream: (async function* () {
        yield { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [] };
      })(),
    }));
    const { startSpan } = await import('../src/telemetry/tracing.js');
    const parent = startSpan('parent', undefined);
    const outcome = await handler({ traceContext: parent.context } as never, { model: 'm', messages: [] } as never);
    expect(exporter.getFinishedSpans().some((s) => s.name === 'cache')).toBe(false);
    if (outcome.kind !== 'stream') throw new Error('expected a stream');
    for await (const _ of outcome.stream) void _;
    const cache = exporter.getFinishedSpans().find((s) => s.name === 'cache');
    expect(cache?.parentSpanContext?.spanId).toBe(parent.span.spanContext().spanId);
  });
});

// Tracing on with no exporter (the default): no span objects are made, but each request still has a
// span id in a trace and the upstream gets a W3C traceparent naming it.
describe('trace propagation without an exporter', () => {
  let upstreamHeaders: IncomingHttpHeaders[] = [];
  let server: RunningServer;
  let relay: Awaited<ReturnType<typeof startRelay>>;

  beforeAll(async () => {
    relay = await startRelay({});
    server = relay.server;
    upstreamHeaders = relay.headers;
  });
  afterAll(() => relay.close());
  beforeEach(() => {
    upstreamHeaders.length = 0;
  });

  async function chat(headers: Record<string, string> = {}) {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.text();
    return res;
  }

  it("continues the caller's trace with the gateway's own span id, flags and tracestate kept", async () => {
    const callerTrace = '0af7651916cd43dd8448eb211c80319c';
    const callerSpan = 'b7ad6b7169203331';
    expect((await chat({ traceparent: `00-${callerTrace}-${callerSpan}-01`, tracestate: 'vendor=abc' })).status).toBe(200);
    const m = TRACEPARENT.exec(String(upstreamHeaders[0]?.traceparent));
    expect(m).not.toBeNull();
    expect(m?.[1]).toBe(callerTrace);
    expect(m?.[2]).not.toBe(callerSpan);
    expect(String(upstreamHeaders[0]?.traceparent).endsWith('-01')).toBe(true);
    expect(upstreamHeaders[0]?.tracestate).toBe('vendor=abc');
    // An unsampled caller stays unsampled.
    expect((await chat({ traceparent: `00-${callerTrace}-${callerSpan}-00` })).status).toBe(200);
    expect(String(upstreamHeaders[1]?.traceparent).endsWith('-00')).toBe(true);
  });

  it('starts a new trace (a fresh id per request) when the caller sent none or an invalid one', async () => {
    await chat();
    await chat({ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' });
    const ids = upstreamHeaders.map((h) => TRACEPARENT.exec(String(h.traceparent)));
    expect(ids.every((m) => m !== null)).toBe(true);
    expect(ids[0]?.[1]).not.toBe(ids[1]?.[1]);
    expect(ids[1]?.[1]).not.toBe('00000000000000000000000000000000');
  });
});

describe('a streamed answer’s spans', () => {
  it('end with the stream: the route span (the attempt’s parent) lasts as long as the provider span under it', async () => {
    const exporter = new InMemorySpanExporter();
    const server = await startTestGateway({
      config: { providers: { sim: { type: 'simulator', options: { tokens_per_second: 100, answer_words: 30 } } }, models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'slow' }] }] },
      spanExporter: exporter,
    });
    try {
      const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
      await res.text();
      await expect.poll(() => exporter.getFinishedSpans().some((s) => s.name === 'POST /v1/chat/completions')).toBe(true);
      const spans = exporter.getFinishedSpans();
      const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
      const route = spans.find((s) => s.name === 'route') as ReadableSpan;
      const provider = spans.find((s) => s.name.startsWith('provider')) as ReadableSpan;
      expect(provider.parentSpanContext?.spanId).toBe(route.spanContext().spanId);
      expect(ms(provider.endTime) - ms(provider.startTime)).toBeGreaterThan(100);
      // It ended with the stream (within a few ms of its attempt), not at the first chunk.
      expect(ms(route.endTime)).toBeGreaterThan(ms(provider.endTime) - 10);
      expect(ms(route.endTime) - ms(route.startTime)).toBeGreaterThan(100);
    } finally {
      await server.close();
    }
  });
});
