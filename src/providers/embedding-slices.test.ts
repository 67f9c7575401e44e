import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { callOptions } from './__fixtures__/replay-server.js';
import { createCohereProvider } from './cohere.js';
import { embedInSlices } from './embedding-slices.js';
import { createGoogleProvider } from './google.js';

describe('embedInSlices', () => {
  it('calls with slices of at most the size, a few at once, and puts the answers back in input order', async () => {
    const inputs = Array.from({ length: 250 }, (_, i) => `t${i}`);
    const sizes: number[] = [];
    let running = 0;
    let most = 0;
    const answer = await embedInSlices(inputs, 60, async (slice) => {
      sizes.push(slice.length);
      running++;
      most = Math.max(most, running);
      // Later slices answer first: the order must not come from the timing.
      await new Promise((r) => setTimeout(r, 40 - Number(slice[0]?.slice(1)) / 10));
      running--;
      return { items: slice.map((t) => Number(t.slice(1))), tokens: slice.length * 2 };
    }, 3);
    expect(sizes.sort((a, b) => b - a)).toEqual([60, 60, 60, 60, 10]);
    expect(most).toBe(3);
    expect(answer.items).toEqual(inputs.map((_, i) => i));
    expect(answer.tokens).toBe(500);
  });

  it('sends no further slice once one has failed, and fails with that error', async () => {
    const inputs = Array.from({ length: 1000 }, (_, i) => `t${i}`);
    const sent: number[] = [];
    const failure = embedInSlices(inputs, 96, async (slice) => {
      const first = Number(slice[0]?.slice(1));
      sent.push(first);
      await new Promise((r) => setTimeout(r, 5));
      if (first === 0) throw new Error('429 slow down');
      return { items: slice, tokens: 0 };
    }, 4);
    await expect(failure).rejects.toThrow('429 slow down');
    await new Promise((r) => setTimeout(r, 30));
    // The four first slices were in flight together; none started after the failure.
    expect(sent.sort((a, b) => a - b)).toEqual([0, 96, 192, 288]);
  });

  it('makes one call for inputs that fit in one slice', async () => {
    let calls = 0;
    const answer = await embedInSlices(['a', 'b'], 96, async (slice) => {
      calls++;
      return { items: slice, tokens: 1 };
    });
    expect([calls, answer.items]).toEqual([1, ['a', 'b']]);
  });
});

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

/** An upstream answering each embedding call with one vector per text, [n] for the text `tn`; records each call's count. */
async function embedder(answer: (texts: string[]) => unknown): Promise<{ url: string; counts: number[] }> {
  const counts: number[] = [];
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const parsed = JSON.parse(body) as { texts?: string[]; requests?: { content: { parts: { text: string }[] } }[] };
      const texts = parsed.texts ?? (parsed.requests ?? []).map((r) => r.content.parts[0]?.text ?? '');
      counts.push(texts.length);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer(texts)));
    });
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, counts };
}

const inputs = Array.from({ length: 230 }, (_, i) => `t${i}`);
const vectorOf = (t: string) => [Number(t.slice(1))];

describe('embedding calls beyond an upstream per-call limit', () => {
  it('gemini: batchEmbedContents calls of at most 100, vectors in input order', async () => {
    const up = await embedder((texts) => ({ embeddings: texts.map((t) => ({ values: vectorOf(t) })) }));
    const google = createGoogleProvider('g', { type: 'google', api_key: 'k', base_url: up.url });
    const res = await google.embed({ model: 'text-embedding-004', input: inputs }, callOptions());
    expect(up.counts.sort((a, b) => b - a)).toEqual([100, 100, 30]);
    expect(res.data.map((d) => d.embedding[0])).toEqual(inputs.map((_, i) => i));
    expect(res.data.map((d) => d.index)).toEqual(inputs.map((_, i) => i));
  });

  it('cohere: embed calls of at most 96, vectors in input order, billed tokens summed', async () => {
    const up = await embedder((texts) => ({ id: 'e', embeddings: { float: texts.map(vectorOf) }, texts, meta: { billed_units: { input_tokens: texts.length * 3 } } }));
    const cohere = createCohereProvider('c', { type: 'cohere', api_key: 'k', base_url: up.url });
    const res = await cohere.embed({ model: 'embed-v4.0', input: inputs }, callOptions());
    expect(up.counts.sort((a, b) => b - a)).toEqual([96, 96, 38]);
    expect(res.data.map((d) => d.embedding[0])).toEqual(inputs.map((_, i) => i));
    expect(res.usage.prompt_tokens).toBe(230 * 3);
  });
});
