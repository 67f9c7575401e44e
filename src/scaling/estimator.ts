// The cheap difficulty estimator used when a request names no level: a hand-weighted score from
// prompt features (length, task verbs, proof and math cues, multi-part questions) blended with the
// nearest labelled prototypes (per-level centroids of embedded example prompts). No model call: it
// costs well under a millisecond. Its accuracy on the bundled labelled set is printed by
// scripts/difficulty-accuracy.ts and recorded in docs/compute.md.
import { DifficultyLevel, LEVELS, parseDifficulty } from './levels.js';

export interface LabelledExample {
  prompt: string;
  level: DifficultyLevel;
  split?: 'train' | 'test';
}

/** Text -> unit vector. The default hashes words and word pairs; any sentence embedder fits. */
export type TextEmbedder = (text: string) => number[];

export interface DifficultyEstimate {
  level: DifficultyLevel;
  /** Blended score on the 0 (easy) .. 3 (expert) scale. */
  score: number;
  featureScore: number;
  /** Expected level under the prototype similarities, when prototypes exist. */
  prototypeScore?: number;
}

export interface EstimatorOptions {
  /** Weight of the prototype score against the feature score (0..1). */
  prototypeWeight?: number;
  embedder?: TextEmbedder;
  /** Softmax temperature over prototype cosine similarities. */
  temperature?: number;
}

interface Cue {
  re: RegExp;
  weight: number;
}

// Each group counts at most `cap` hits; weights are on the 0..3 level scale.
const CUE_GROUPS: { cues: Cue[]; cap: number }[] = [
  {
    cap: 1,
    cues: [
      { re: /^\s*(?:hi|hello|hey)\b/i, weight: -0.7 },
      { re: /\bwhat is the (?:capital|color|colour|plural|opposite|chemical symbol|boiling point|largest)\b/i, weight: -0.6 },
      { re: /\b(?:translate|spell|synonym|convert|name a|define the word|fun fact)\b/i, weight: -0.6 },
    ],
  },
  {
    cap: 1,
    cues: [{ re: /\b(?:explain|describe|summari[sz]e|compare|why|how does|how do|write a (?:short|polite|sql)|list the|difference between)\b/i, weight: 0.7 }],
  },
  {
    cap: 2,
    cues: [
      { re: /\bstep by step\b|\bshow (?:your|the) (?:work|calculation)\b/i, weight: 0.5 },
      { re: /\b(?:calculate|compute|solve|find all|how many ways|probability)\b/i, weight: 0.8 },
      { re: /\b(?:implement|debug|refactor|optimi[sz]e|regular expression|function that|function to)\b/i, weight: 0.8 },
      { re: /\b(?:complexity|algorithm|derivative|integral|derive|equations?)\b/i, weight: 0.6 },
      { re: /\bdesign (?:a|an)\b/i, weight: 0.6 },
    ],
  },
  {
    cap: 2,
    cues: [
      { re: /\bprove\b|\bproof\b|\brigorous(?:ly)?\b|\bformal(?:ly|ize)?\b/i, weight: 1.0 },
      { re: /\b(?:theorem|lemma|undecidab\w*|linearizab\w*|soundness|completeness|convergence|first principles)\b/i, weight: 0.7 },
      { re: /\b(?:trade-?offs|failure modes|distributed|consensus|fault-tolerant|research plan|threats to validity)\b/i, weight: 0.7 },
    ],
  },
];

/** The feature score on the 0..3 scale, before blending. */
export function featureScore(text: string): number {
  const words = text.match(/[\p{L}\p{N}'^]+/gu) ?? [];
  // ~6 words scores 0, ~16 words 0.6, ~40 words 1.2: longer asks tend to be harder ones.
  let score = Math.max(-0.5, Math.min(1.4, (Math.log2(Math.max(1, words.length)) - 2.6) * 0.5));
  for (const group of CUE_GROUPS) {
    let hits = 0;
    for (const cue of group.cues) {
      if (hits >= group.cap) break;
      if (cue.re.test(text)) {
        score += cue.weight;
        hits++;
      }
    }
  }
  const mathSymbols = (text.match(/[=+*/^%]|\d+(?:\.\d+)?/g) ?? []).length;
  score += Math.min(0.4, mathSymbols * 0.05);
  const questions = (text.match(/\?/g) ?? []).length + (text.match(/;|, and (?:then )?|\band then\b/gi) ?? []).length;
  if (questions > 1) score += 0.3;
  return Math.max(0, Math.min(3, score));
}

/** Words and adjacent word pairs hashed into a fixed-size unit vector (FNV-1a). */
export function hashedBagEmbedder(dims = 512): TextEmbedder {
  return (text) => {
    const v = new Array<number>(dims).fill(0);
    const words = (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).map((w) => (w.length > 4 ? w.replace(/(?:ing|ed|es|s)$/, '') : w));
    const add = (token: string, weight: number) => {
      const h = fnv1a(token);
      v[h % dims] = (v[h % dims] as number) + ((h >>> 16) & 1 ? weight : -weight);
    };
    for (let i = 0; i < words.length; i++) {
      add(words[i] as string, 1);
      if (i > 0) add(`${words[i - 1]} ${words[i]}`, 0.5);
    }
    const norm = Math.hypot(...v) || 1;
    return v.map((x) => x / norm);
  };
}

export class DifficultyEstimator {
  private readonly embedder: TextEmbedder;
  private readonly prototypes: { level: number; centroid: number[] }[] = [];
  private readonly prototypeWeight: number;
  private readonly temperature: number;

  constructor(examples: readonly LabelledExample[], opts: EstimatorOptions = {}) {
    this.embedder = opts.embedder ?? hashedBagEmbedder();
    this.prototypeWeight = examples.length > 0 ? (opts.prototypeWeight ?? 0.25) : 0;
    this.temperature = opts.temperature ?? 0.05;
    for (const [index, level] of LEVELS.entries()) {
      const vectors = examples.filter((e) => e.level === level).map((e) => this.embedder(e.prompt));
      if (vectors.length === 0) continue;
      this.prototypes.push({ level: index, centroid: normalise(sum(vectors)) });
    }
  }

  estimate(text: string): DifficultyEstimate {
    const f = featureScore(text);
    let p: number | undefined;
    if (this.prototypes.length > 0 && this.prototypeWeight > 0) {
      const v = this.embedder(text);
      const sims = this.prototypes.map((proto) => dot(v, proto.centroid) / this.temperature);
      const max = Math.max(...sims);
      const weights = sims.map((s) => Math.exp(s - max));
      const total = weights.reduce((a, b) => a + b, 0);
      p = this.prototypes.reduce((acc, proto, i) => acc + proto.level * ((weights[i] as number) / total), 0);
    }
    const score = p === undefined ? f : (1 - this.prototypeWeight) * f + this.prototypeWeight * p;
    const index = Math.max(0, Math.min(3, Math.round(score)));
    return { level: LEVELS[index] as DifficultyLevel, score, featureScore: f, ...(p !== undefined ? { prototypeScore: p } : {}) };
  }
}

/** Parses a JSONL of `{prompt, level, split?}` lines (blank lines ignored). */
export function parseLabelledExamples(jsonl: string): LabelledExample[] {
  const out: LabelledExample[] = [];
  for (const [i, line] of jsonl.split('\n').entries()) {
    if (!line.trim()) continue;
    const row = JSON.parse(line) as { prompt?: unknown; level?: unknown; split?: unknown };
    const level = parseDifficulty(row.level as string);
    if (typeof row.prompt !== 'string' || !level) throw new Error(`line ${i + 1}: expected {"prompt": string, "level": easy|medium|hard|expert}`);
    out.push({ prompt: row.prompt, level, ...(row.split === 'train' || row.split === 'test' ? { split: row.split } : {}) });
  }
  return out;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function sum(vectors: number[][]): number[] {
  const out = new Array<number>(vectors[0]?.length ?? 0).fill(0);
  for (const v of vectors) for (let i = 0; i < v.length; i++) out[i] = (out[i] as number) + (v[i] as number);
  return out;
}

function normalise(v: number[]): number[] {
  const n = Math.hypot(...v) || 1;
  return v.map((x) => x / n);
}

function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}
