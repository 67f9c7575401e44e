// What a cache entry holds and how it is stored: the answer (a ChatResult or the stream's chunks
// with their original chunking), what it saved, and for semantic entries the embedded text's
// partition and guard features. Payloads are JSON, gzip-compressed above a size threshold.
import { promisify } from 'node:util';
import { gunzip, gunzipSync, gzip, gzipSync } from 'node:zlib';
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import type { PromptFeatures } from './guards.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

export type CachedAnswer = { kind: 'result'; result: ChatResult } | { kind: 'stream'; chunks: ChatChunk[] };

export interface SemanticMeta {
  /** Fingerprint partition (see keys.ts) the vector is indexed under. */
  partition: string;
  /** Embedder id the vector came from; vectors of other embedders are ignored. */
  embedder: string;
  features: PromptFeatures;
}

export interface EntryMeta {
  key: string;
  namespace: string;
  model: string;
  createdAt: number;
  /** Tokens and dollars one hit saves (the original call's usage and cost). */
  tokens: number;
  costUsd: number;
  semantic?: SemanticMeta;
}

/** An entry as the stores keep it: metadata, encoded payload and the optional vector. */
export interface StoredEntry {
  meta: EntryMeta;
  payload: Buffer;
  vector?: Float32Array;
}

const PLAIN = 0x00;
const GZIP = 0x01;

/**
 * Payloads up to this size are (de)compressed on the calling thread. zlib's asynchronous calls build
 * a stream and hop to the thread pool: ~200 µs of CPU for a 2 KB streamed answer against ~50 µs done
 * in place, which blocks the loop for about that long; larger payloads go to the pool.
 */
const INLINE_ZLIB_MAX_BYTES = 64 * 1024;

/**
 * gzip level 1: a stored answer is mostly the same JSON keys over and over (a streamed answer repeats
 * its chunk envelope every few dozen bytes). Measured 2026-12-06 (bench/RESULTS.md, fifth session):
 * zlib was 4.8% of a gateway worker's CPU profile with 1,000 streaming clients; level 1 took about
 * half level 6's CPU and gave 270 vs 269 bytes for a 2.5 KB streamed answer, 527 vs 453 for 23 KB.
 * Inflating costs the same either way.
 */
const GZIP_OPTIONS = { level: 1 };

export async function encodeAnswer(answer: CachedAnswer, compressMinBytes: number): Promise<Buffer> {
  const json = Buffer.from(JSON.stringify(answer), 'utf8');
  if (compressMinBytes > 0 && json.length >= compressMinBytes) {
    const z = json.length <= INLINE_ZLIB_MAX_BYTES ? gzipSync(json, GZIP_OPTIONS) : await gzipAsync(json, GZIP_OPTIONS);
    if (z.length < json.length) return Buffer.concat([Buffer.from([GZIP]), z]);
  }
  return Buffer.concat([Buffer.from([PLAIN]), json]);
}

/** Rejects a payload that is not an answer, or not one in the shape replay reads. */
export async function decodeAnswer(buf: Buffer): Promise<CachedAnswer> {
  const body = buf.subarray(1);
  // A compressed payload inflates to a few times its size: the same bound, on the input.
  const json = buf[0] !== GZIP ? body : body.length <= INLINE_ZLIB_MAX_BYTES / 8 ? gunzipSync(body) : await gunzipAsync(body);
  const answer: unknown = JSON.parse(json.toString('utf8'));
  if (!isAnswer(answer)) throw new Error('cached payload is not an answer in the stored shape');
  return answer;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isArrayOf = (v: unknown, each: (x: unknown) => boolean): boolean => Array.isArray(v) && v.every(each);
const isToolCalls = (v: unknown, fn: (f: unknown) => boolean): boolean => v == null || isArrayOf(v, (c) => isObject(c) && fn(c.function));

/**
 * The structure replay and folding walk (choices, messages or deltas, tool calls, usage), checked
 * when an entry is read: a payload that parses but has another shape (written by another version, or
 * damaged) would otherwise fail a streamed hit after its headers went out.
 */
function isAnswer(a: unknown): a is CachedAnswer {
  if (!isObject(a)) return false;
  if (a.kind === 'result') {
    const r = a.result;
    return (
      isObject(r) &&
      isObject(r.usage) &&
      isArrayOf(r.choices, (c) => isObject(c) && isObject(c.message) && isToolCalls(c.message.tool_calls, isObject))
    );
  }
  if (a.kind === 'stream') {
    const chunks = a.chunks;
    return (
      Array.isArray(chunks) &&
      chunks.length > 0 &&
      chunks.every(
        (k) =>
          isObject(k) &&
          isArrayOf(k.choices, (c) => isObject(c) && isObject(c.delta) && isToolCalls(c.delta.tool_calls, (f) => f === undefined || isObject(f))),
      )
    );
  }
  return false;
}

/**
 * What a semantic entry costs beyond its payload, metadata and vector: the vector index's node (its
 * copy of the vector is counted separately; neighbour lists and label maps) and the JavaScript objects
 * that hold the entry and its guard features. Measured: 22,000 semantic entries in the memory store
 * with usearch cost 3.7 KB of RSS each while payload, metadata and two vector copies came to 1.9 KB.
 */
export const SEMANTIC_ENTRY_OVERHEAD_BYTES = 1800;

/**
 * Bytes an entry costs against the memory budget: payload and metadata, and for a semantic entry its
 * vector twice (the entry's copy and the vector index's) plus SEMANTIC_ENTRY_OVERHEAD_BYTES, so
 * `max_bytes` bounds what the semantic cache really holds. Exact-only entries count payload and
 * metadata. The metadata counts as its JSON's length; a store that has serialised it already passes
 * that length rather than have it serialised again (a semantic entry's guard features make it the
 * larger part of the work).
 */
export function entryBytes(e: StoredEntry, metaJsonLength = JSON.stringify(e.meta).length): number {
  return e.payload.length + (e.vector ? 2 * e.vector.byteLength + SEMANTIC_ENTRY_OVERHEAD_BYTES : 0) + metaJsonLength;
}

export function vectorToBase64(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

export function vectorFromBuffer(buf: Buffer): Float32Array {
  const out = new Float32Array(buf.length / 4);
  new Uint8Array(out.buffer).set(buf.subarray(0, out.length * 4));
  return out;
}
