import { describe, expect, it } from 'vitest';
import { fixture } from './__fixtures__/fixture-server.js';
import { ndjsonLines, sseEvents } from './stream-parsers.js';

/** A body of these chunks, recording whether its reader stopped it early. */
function body(chunks: (string | Uint8Array)[], opts: { failAfter?: number } = {}) {
  const state = { returned: false, reads: 0 };
  const iterable: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        if (opts.failAfter !== undefined && state.reads >= opts.failAfter) throw new Error('connection reset');
        const c = chunks[state.reads++];
        if (c === undefined) return { done: true, value: undefined };
        return { done: false, value: typeof c === 'string' ? Buffer.from(c) : c };
      },
      return: async () => {
        state.returned = true;
        return { done: true, value: undefined };
      },
    }),
  };
  return { iterable, state };
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('sseEvents', () => {
  it('parses events split anywhere across chunks, several in one chunk, a character split between two, CRLF framing', async () => {
    const text = Buffer.from('data: {"a":"✓"}\n\nevent: ping\ndata: 1\n\ndata: 2\r\n\r\ndata: [DONE]\n\n');
    const cut = text.indexOf(Buffer.from('✓')) + 1; // inside the three bytes of ✓
    const { iterable } = body([text.subarray(0, 3), text.subarray(3, cut), text.subarray(cut)]);
    const events = await all(sseEvents(iterable));
    expect(events.map((e) => [e.event, e.data])).toEqual([
      [undefined, '{"a":"✓"}'],
      ['ping', '1'],
      [undefined, '2'],
      [undefined, '[DONE]'],
    ]);
  });

  it('stops the body when its reader stops early, and hands over nothing after', async () => {
    const { iterable, state } = body(['data: 1\n\ndata: 2\n\n', 'data: 3\n\n']);
    const events = sseEvents(iterable);
    for await (const e of events) if (e.data === '1') break;
    expect(state.returned).toBe(true);
    expect(state.reads).toBe(1);
    expect(await events.next()).toEqual({ done: true, value: undefined });
  });

  it('passes a failure of the body on to its reader, after the events that came before it', async () => {
    const { iterable } = body(['data: 1\n\n', 'data: 2\n\n'], { failAfter: 1 });
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const e of sseEvents(iterable)) seen.push(e.data);
      })(),
    ).rejects.toThrow('connection reset');
    expect(seen).toEqual(['1']);
  });
  it('passes an `error:` field line (llama-server before PR #16486) on as an error event holding {"error": …}, in order, before [DONE]', async () => {
    const text = await fixture('llamaserver-legacy-midstream-error.chunks.txt');
    const { iterable } = body([text.slice(0, 200), text.slice(200, 230), text.slice(230)]);
    const events = await all(sseEvents(iterable));
    expect(events.map((e) => e.event)).toEqual([undefined, 'error', undefined]);
    expect(JSON.parse(events[1]?.data ?? '')).toEqual({ error: { code: 500, message: 'Failed to decode the batch', type: 'server_error' } });
    expect(events[2]?.data).toBe('[DONE]');
  });

  it('keeps every field of the error, and takes a text or an already wrapped error as they come', async () => {
    const text = await fixture('llamaserver-legacy-stream-error.chunks.txt');
    const [first] = await all(sseEvents(body([text]).iterable));
    expect(JSON.parse(first?.data ?? '')).toEqual({
      error: { code: 400, message: 'the request exceeds the available context size. try increasing the context size or enable context shift', type: 'exceed_context_size_error', n_prompt_tokens: 14429, n_ctx: 8192 },
    });
    const more = await all(sseEvents(body(['error: model crashed\n\nerror: {"error":{"message":"wrapped"}}\n\nerror:\n\nfoo: ignored\n\n']).iterable));
    expect(more.map((e) => JSON.parse(e.data))).toEqual([
      { error: { message: 'model crashed' } },
      { error: { message: 'wrapped' } },
      { error: { message: 'the upstream sent an empty SSE error field' } },
    ]);
  });
});

describe('ndjsonLines', () => {
  it('yields each non-blank line, lines split across chunks and a last line without its newline', async () => {
    const { iterable } = body(['{"a":1}\n{"b"', ':2}\n\n  \n{"c":', '3}']);
    expect(await all(ndjsonLines(iterable))).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  it('stops the body when its reader stops early', async () => {
    const { iterable, state } = body(['{"a":1}\n{"b":2}\n', '{"c":3}\n']);
    for await (const line of ndjsonLines(iterable)) if (line === '{"a":1}') break;
    expect(state.returned).toBe(true);
  });
});
