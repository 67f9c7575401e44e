// Random identifiers for the hot path (trace and span ids, mesh executions, cached answers' ids),
// sliced from a pool of random bytes refilled 4 KiB at a time: crypto.randomBytes per id costs
// several microseconds (a buffer and an OpenSSL call each; ~2% of a mesh worker's CPU per request),
// a slice of the pool a fraction of one. The bytes come from the same CSPRNG.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolAt = POOL_BYTES;

function take(bytes: number): number {
  if (bytes > POOL_BYTES) throw new RangeError(`at most ${POOL_BYTES} random bytes at a time`);
  if (poolAt + bytes > POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  poolAt += bytes;
  return poolAt - bytes;
}

/** `bytes` random bytes as lowercase hex (2 × bytes characters). */
export function randomHex(bytes: number): string {
  const at = take(bytes);
  return pool.toString('hex', at, at + bytes);
}

/** `bytes` random bytes as base64url, no padding. */
export function randomBase64Url(bytes: number): string {
  const at = take(bytes);
  return pool.toString('base64url', at, at + bytes);
}
