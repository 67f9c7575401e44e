// Small stand-ins for tests that need to see what the gateway sends upstream: a request body read as
// JSON, and an OpenAI-compatible server that keeps every POST body as it arrived and answers one
// fixed chat completion ("hello"); any GET (the passthrough's model list) gets an empty list.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request's body, parsed as JSON (`{}` when it has none, as a GET). */
export function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      try {
        resolve(JSON.parse(body || '{}') as Record<string, unknown>);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/** A stand-in upstream whose every request is answered by `handle`, with its body read as JSON. */
export interface JsonUpstream {
  /** Its base URL, `/v1` included. */
  url: string;
  close(): Promise<void>;
}

export async function startJsonUpstream(handle: (req: IncomingMessage, body: Record<string, unknown>, res: ServerResponse) => void): Promise<JsonUpstream> {
  const server = createServer((req, res) => {
    readJsonBody(req).then(
      (body) => handle(req, body, res),
      () => res.writeHead(400).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface RecordingUpstream {
  /** Its base URL, `/v1` included (what OPENAI_BASE_URL takes). */
  url: string;
  /** Every POST body, raw, in arrival order. */
  raw: string[];
  close(): Promise<void>;
}

/** An OpenAI-compatible upstream answering every chat completion with `hello` from `model`. */
export async function startRecordingUpstream(model: string): Promise<RecordingUpstream> {
  const raw: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.method !== 'POST') {
        res.end(JSON.stringify({ object: 'list', data: [] }));
        return;
      }
      raw.push(body);
      res.end(
        JSON.stringify({
          id: 'chatcmpl-up',
          object: 'chat.completion',
          created: 1_700_000_000,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'hello', refusal: null }, finish_reason: 'stop', logprobs: null }],
          usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    raw,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface CompletionsUpstream {
  /** Its base URL, `/v1` included. */
  url: string;
  /** Every POST, in arrival order: its path and its JSON body. */
  requests: { path: string; body: Record<string, unknown> }[];
  close(): Promise<void>;
}

/**
 * A vLLM-like OpenAI-compatible server: `/v1/completions` continues the raw prompt with `completion`
 * (JSON, or SSE `text_completion` chunks, its usage chunk with `stream_options.include_usage`), the
 * prompt in front with `echo`, legacy logprobs (parallel arrays; the echoed prompt's first token has
 * none) with `logprobs`; `/v1/chat/completions` answers `chat says hello`. Bodies are kept as they came.
 */
export async function startCompletionsUpstream(model: string, completion = ' return n if n < 2 else fib(n - 1) + fib(n - 2)'): Promise<CompletionsUpstream> {
  const requests: CompletionsUpstream['requests'] = [];
  const server: Server = createServer((req, res) => {
    void readJsonBody(req).then((body) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      if (req.method !== 'POST') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [] }));
        return;
      }
      requests.push({ path, body });
      const usage = { prompt_tokens: 4, completion_tokens: 9, total_tokens: 13 };
      if (path.endsWith('/chat/completions')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-up', object: 'chat.completion', created: 1_700_000_000, model, choices: [{ index: 0, message: { role: 'assistant', content: 'chat says hello' }, finish_reason: 'stop' }], usage }));
        return;
      }
      const prompt = String(body.prompt);
      const echo = body.echo === true;
      const wantsLogprobs = typeof body.logprobs === 'number';
      // Pieces of text, each one token here: the prompt's words (echo), then the completion's.
      const tokens = (text: string) => text.match(/\s*\S+/g) ?? [];
      const pieces = [...(echo ? tokens(prompt).map((t) => ({ t, prompt: true })) : []), ...tokens(completion).map((t) => ({ t, prompt: false }))];
      let offset = 0;
      const logprobsOf = (list: typeof pieces) => {
        if (!wantsLogprobs) return null;
        const out = { tokens: [] as string[], token_logprobs: [] as (number | null)[], top_logprobs: [] as (Record<string, number> | null)[], text_offset: [] as number[] };
        for (const p of list) {
          const first = offset === 0 && p.prompt;
          out.tokens.push(p.t);
          out.token_logprobs.push(first ? null : -0.5);
          out.top_logprobs.push(first ? null : { [p.t]: -0.5 });
          out.text_offset.push(offset);
          offset += p.t.length;
        }
        return out;
      };
      const base = { id: 'cmpl-vllm-1', object: 'text_completion', created: 1_700_000_000, model };
      if (body.stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' });
        const text = pieces.map((p) => p.t).join('');
        res.end(JSON.stringify({ ...base, choices: [{ index: 0, text, logprobs: logprobsOf(pieces), finish_reason: 'length', stop_reason: null }], usage }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      // The echoed prompt comes first, whole, as vLLM streams it; then a token per chunk.
      const groups = echo ? [pieces.filter((p) => p.prompt), ...pieces.filter((p) => !p.prompt).map((p) => [p])] : pieces.map((p) => [p]);
      for (const g of groups) send({ ...base, choices: [{ index: 0, text: g.map((p) => p.t).join(''), logprobs: logprobsOf(g), finish_reason: null, stop_reason: null }], usage: null });
      send({ ...base, choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length', stop_reason: null }], usage: null });
      if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) send({ ...base, choices: [], usage });
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
