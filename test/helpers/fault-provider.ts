// TEST-ONLY provider adapter: speaks OpenAI chat (JSON and SSE) to the fault-injecting upstream over
// UpstreamHttp, so routing can be tested against real HTTP failures before the real `openai` adapter
// (src/providers/openai.ts) lands. Not for production use; the fault tests switch to the real
// adapter at merge.
import type { ChatChunk, ChatRequest, ChatResult } from '../../src/canonical/chat.js';
import { UpstreamError } from '../../src/providers/errors.js';
import { UpstreamHttp } from '../../src/providers/http.js';
import { sseEvents } from '../../src/providers/stream-parsers.js';
import type { CallOptions, ProviderAdapter } from '../../src/providers/types.js';

export function createFaultTestProvider(name: string, baseUrl: string, streamIdleTimeoutMs = 60_000): ProviderAdapter {
  const http = new UpstreamHttp({ provider: name, baseUrl, maxConnections: 64, streamIdleTimeoutMs });
  const malformed = (message: string, cause?: unknown) => new UpstreamError({ provider: name, kind: 'malformed', message, cause });
  return {
    name,
    type: 'openai',
    async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
      const res = await http.json<ChatResult>('POST', '/chat/completions', { ...req, stream: false }, opts);
      if (!res.body || !Array.isArray(res.body.choices)) throw malformed(`${name} answered without choices`);
      return res.body;
    },
    async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
      const res = await http.stream('POST', '/chat/completions', { ...req, stream: true, stream_options: { include_usage: true } }, opts);
      const body = res.body;
      return {
        async *[Symbol.asyncIterator]() {
          let sawDone = false;
          let any = false;
          try {
            for await (const event of sseEvents(body)) {
              if (event.data === '[DONE]') {
                sawDone = true;
                break;
              }
              let chunk: ChatChunk;
              try {
                chunk = JSON.parse(event.data) as ChatChunk;
              } catch (cause) {
                throw malformed(`${name} sent an event that is not JSON`, cause);
              }
              any = true;
              yield chunk;
            }
          } catch (err) {
            // Before the first event nothing reached the client: let routing try elsewhere.
            if (!any && err instanceof UpstreamError && err.kind === 'stream_interrupted') {
              throw new UpstreamError({ provider: name, kind: 'connect', message: err.message, cause: err });
            }
            throw err;
          } finally {
            body.destroy();
          }
          if (!sawDone) {
            throw new UpstreamError({ provider: name, kind: any ? 'stream_interrupted' : 'connect', message: `${name} stream ended without [DONE]`, retryable: !any });
          }
        },
      };
    },
    async embed(): Promise<never> {
      throw new UpstreamError({ provider: name, kind: 'unsupported', message: 'no embeddings' });
    },
    async ready() {
      return true;
    },
    async close() {
      await http.close();
    },
  };
}
