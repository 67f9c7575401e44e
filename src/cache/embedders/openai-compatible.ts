// Embeddings from any OpenAI-compatible /v1/embeddings: a URL (OpenAI, vLLM, Ollama, LM Studio…)
// over one keep-alive undici pool, or one of the gateway's own provider adapters.
import { Pool } from 'undici';
import type { EmbeddingResult } from '../../canonical/embeddings.js';
import { upstreamErrorFromText } from '../../providers/http.js';
import type { ProviderAdapter } from '../../providers/types.js';
import { normalizeInPlace, type Embedder } from './types.js';

export type OpenAICompatibleEmbedderOptions = {
  model: string;
  /** Known vector size; otherwise learned from a probe call at creation. */
  dimensions?: number;
  timeoutMs?: number;
} & ({ baseUrl: string; apiKey?: string; headers?: Record<string, string> } | { provider: ProviderAdapter });

type Transport = (input: string[]) => Promise<EmbeddingResult>;

export class OpenAICompatibleEmbedder implements Embedder {
  private constructor(
    readonly id: string,
    readonly dimensions: number,
    private readonly call: Transport,
    private readonly close_: () => Promise<void>,
  ) {}

  static async create(opts: OpenAICompatibleEmbedderOptions): Promise<OpenAICompatibleEmbedder> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    let call: Transport;
    let close = async (): Promise<void> => undefined;
    let where: string;
    if ('provider' in opts) {
      const provider = opts.provider;
      where = `provider:${provider.name}`;
      call = (input) =>
        provider.embed({ model: opts.model, input }, { signal: AbortSignal.timeout(timeoutMs), timeoutMs, requestId: 'cache-embed' });
    } else {
      const base = new URL(opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`);
      const pool = new Pool(base.origin, { connections: 8, keepAliveTimeout: 30_000 });
      const path = new URL('embeddings', base).pathname;
      const headers: Record<string, string> = { 'content-type': 'application/json', ...(opts.headers ?? {}) };
      if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
      where = base.href;
      call = async (input) => {
        const res = await pool.request({
          method: 'POST',
          path,
          headers,
          body: JSON.stringify({ model: opts.model, input, encoding_format: 'float' }),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        const text = await res.body.text();
        // Classified as every provider's error is: a refused input (a prompt over the context) is told
        // from auth, quota, limits and outages, so a batch is retried apart only for the former.
        if (res.statusCode !== 200) throw upstreamErrorFromText(`embeddings ${where}`, res.statusCode, text, res.headers);
        return JSON.parse(text) as EmbeddingResult;
      };
      close = () => pool.close();
    }
    let dims = opts.dimensions;
    if (dims === undefined) {
      const probe = await call(['dimension probe']);
      const v = probe.data[0]?.embedding;
      if (!Array.isArray(v)) throw new Error(`embeddings ${where} returned no float vector`);
      dims = v.length;
    }
    return new OpenAICompatibleEmbedder(`openai:${where}:${opts.model}`, dims, call, close);
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const res = await this.call(texts);
    const out: Float32Array[] = new Array(texts.length);
    for (const d of res.data) {
      if (!Array.isArray(d.embedding)) throw new Error('embeddings arrived base64-encoded; float was requested');
      if (d.embedding.length !== this.dimensions) throw new Error(`embedding has ${d.embedding.length} dims, expected ${this.dimensions}`);
      out[d.index] = normalizeInPlace(Float32Array.from(d.embedding));
    }
    for (let i = 0; i < texts.length; i++) if (!out[i]) throw new Error(`no embedding for input ${i}`);
    return out;
  }

  close(): Promise<void> {
    return this.close_();
  }
}
