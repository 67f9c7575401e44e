// A minimal OpenAI-compatible upstream stand-in for benchmarks: a fixed chat completion as JSON, or
// as an SSE stream of `chunks` pieces, after an optional first-byte latency and with an optional delay
// per streamed word. A prompt containing `[bench:fail]` gets a 500, so a load test injects failures
// it can count exactly; `GET …/models` lists `bench-model`. Run as its own process:
//   tsx bench/lib/upstream.ts <port> [delay-per-word-ms] [first-byte-latency-ms]
import { createServer } from 'node:http';

const completion = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1700000000,
  model: 'bench-model',
  choices: [{ index: 0, message: { role: 'assistant', content: 'The quick brown fox jumps over the lazy dog.' }, finish_reason: 'stop', logprobs: null }],
  usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 },
});

function chunk(delta: object, finish: string | null): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'bench-model', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
}
const words = 'The quick brown fox jumps over the lazy dog .'.split(' ');
// Every stream sends the same events: serialised once, so the stand-in's own CPU (it shares the
// machine with the gateway under test) goes to sockets and timers, not to JSON.stringify.
const roleChunk = chunk({ role: 'assistant', content: '' }, null);
const wordChunks = words.map((w) => chunk({ content: `${w} ` }, null));
const stopChunk = chunk({}, 'stop');
const usageChunk = `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'bench-model', choices: [], usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 } })}\n\n`;

const models = JSON.stringify({ object: 'list', data: [{ id: 'bench-model', object: 'model', created: 1700000000, owned_by: 'bench' }] });

export const FAIL_MARKER = '[bench:fail]';
const failure = JSON.stringify({ error: { message: 'injected failure', type: 'server_error', code: null, param: null } });

export function startUpstream(port: number, streamDelayMs = 0, latencyMs = 0) {
  const server = createServer((req, res) => {
    // The model list a mesh worker's OpenAI-compatible backend reads to say what its node serves.
    if (req.method === 'GET' && req.url?.endsWith('/models')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(models);
      return;
    }
    let body = '';
    req.on('data', (d: Buffer) => (body += d));
    req.on('end', () => (latencyMs > 0 ? setTimeout(answer, latencyMs) : answer()));
    const answer = () => {
      if (body.includes(FAIL_MARKER)) {
        res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(failure) });
        res.end(failure);
        return;
      }
      const stream = body.includes('"stream":true');
      if (!stream) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(completion) });
        res.end(completion);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(roleChunk);
      let i = 0;
      const next = () => {
        if (i < wordChunks.length) {
          res.write(wordChunks[i++] as string);
          if (streamDelayMs > 0) setTimeout(next, streamDelayMs);
          else next();
          return;
        }
        res.write(stopChunk);
        res.write(usageChunk);
        res.end('data: [DONE]\n\n');
      };
      next();
    };
  });
  server.keepAliveTimeout = 60_000;
  return new Promise<typeof server>((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1]?.endsWith('upstream.ts')) {
  const port = Number(process.argv[2] ?? 0);
  void startUpstream(port, Number(process.argv[3] ?? 0), Number(process.argv[4] ?? 0)).then((s) => {
    const addr = s.address();
    console.log(`READY ${typeof addr === 'object' && addr ? addr.port : port}`);
  });
}
