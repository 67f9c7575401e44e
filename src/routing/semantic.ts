// Seed 002's content router: the prompt (the last user message) is embedded and compared with
// labelled example prompts; the route whose best example is most similar wins when it reaches the
// threshold, else the group's default. Example vectors are embedded once, on first use.
import { contentText, type ChatRequest } from '../canonical/chat.js';
import { dot, type Embedder } from '../cache/embedders/types.js';
import type { SemanticRoutingConfig } from '../config/schema.js';

export interface SemanticMatch {
  /** The route's name ("code", "math"…), or `default`. */
  route: string;
  /** Deployment id or group name to send the request to; undefined means the group's own order. */
  target?: string;
  similarity: number;
  matched: boolean;
}

interface EmbeddedExample {
  route: string;
  target: string;
  vector: Float32Array;
}

/** The text a request is routed on: the last user message (what the user is asking now). */
export function routingText(req: ChatRequest): string {
  for (let i = req.messages.length - 1; i >= 0; i--) {
    const m = req.messages[i];
    if (m?.role === 'user') return contentText(m.content);
  }
  return contentText(req.messages[req.messages.length - 1]?.content ?? '');
}

export class SemanticRouter {
  private examples?: Promise<EmbeddedExample[]>;

  constructor(
    private readonly cfg: SemanticRoutingConfig,
    private readonly embedder: Embedder,
  ) {}

  async classify(text: string): Promise<SemanticMatch> {
    const examples = await this.embeddedExamples();
    const [vector] = await this.embedder.embed([text]);
    let best: EmbeddedExample | undefined;
    let bestScore = -Infinity;
    for (const ex of examples) {
      const score = dot(vector as Float32Array, ex.vector);
      if (score > bestScore) {
        bestScore = score;
        best = ex;
      }
    }
    if (best && bestScore >= this.cfg.threshold) return { route: best.route, target: best.target, similarity: bestScore, matched: true };
    return { route: 'default', target: this.cfg.default, similarity: Number.isFinite(bestScore) ? bestScore : 0, matched: false };
  }

  private embeddedExamples(): Promise<EmbeddedExample[]> {
    this.examples ??= (async () => {
      const flat = this.cfg.routes.flatMap((r) => r.examples.map((text) => ({ route: r.name, target: r.target, text })));
      const vectors = await this.embedder.embed(flat.map((f) => f.text));
      return flat.map((f, i) => ({ route: f.route, target: f.target, vector: vectors[i] as Float32Array }));
    })();
    // A failed embedding is retried on the next request rather than cached forever.
    this.examples.catch(() => {
      this.examples = undefined;
    });
    return this.examples;
  }
}
