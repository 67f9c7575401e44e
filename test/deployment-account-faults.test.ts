// An upstream account that cannot pay or cannot be served from here (out of credit, billing limit,
// a region the API refuses) fails every request it gets, whatever the request: the group's next
// deployment answers instead of the client getting the upstream's 400 until someone tops it up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';

const REFUSALS: Array<[string, 'anthropic' | 'google', number, unknown]> = [
  ['Anthropic out of credit (400)', 'anthropic', 400, { type: 'error', error: { type: 'invalid_request_error', message: 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.' } }],
  ['Anthropic billing_error (402)', 'anthropic', 402, { type: 'error', error: { type: 'billing_error', message: 'Billing issue with your account.' } }],
  ['Gemini from an unsupported location (400 FAILED_PRECONDITION)', 'google', 400, { error: { code: 400, message: 'User location is not supported for the API use.', status: 'FAILED_PRECONDITION' } }],
];

describe.each(REFUSALS)('%s', (_name, type, status, body) => {
  let upstream: JsonUpstream;
  let gateway: RunningServer;
  let calls = 0;

  beforeAll(async () => {
    upstream = await startJsonUpstream((_req, _body, res) => {
      calls++;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    const base = upstream.url.replace(/\/v1$/, '');
    gateway = await startTestGateway({
      config: {
        providers: { broke: { type, base_url: base, api_key: 'k' }, backup: { type: 'simulator' } },
        models: [{ name: 'chat', deployments: [{ provider: 'broke', model: type === 'google' ? 'gemini-2.5-flash' : 'claude-sonnet-4-5' }, { provider: 'backup', model: 'sim', priority: 1 }] }],
      },
    });
  });
  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it('is answered by the next deployment of the group, after one call to the refusing one', async () => {
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-inferenceflow-provider')).toBe('backup');
    expect(calls).toBe(1);
  });
});
