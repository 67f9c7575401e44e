// Stored Responses (`store`, OpenAI's default): the conversation a response ended, so a later request
// can continue it with `previous_response_id`, and the Response object for GET /v1/responses/{id}.
// Kept in Redis when the gateway has it (every replica sees them), else in this process (bounded).
// Entries belong to the tenant that made them and expire after RESPONSE_TTL_S. An entry holds the
// whole conversation, so both stores refuse one over MAX_ENTRY_BYTES; `put` says whether it kept the
// entry, and the route answers `store: false` when it did not.
import type { ChatMessage } from '../canonical/chat.js';
import type { RedisClient } from '../store/redis.js';

export const RESPONSE_TTL_S = 86_400;
/**
 * The largest entry either store keeps, as its JSON in UTF-8: fixed, and smaller than the default
 * request body limit (32 MiB), since every step of a chain stores its whole conversation again and
 * the in-process store holds 64 MiB in all.
 */
export const MAX_ENTRY_BYTES = 4 * 1024 * 1024;
const MEMORY_MAX = 10_000;
/** The in-process store's budget (inline images and documents make entries large). */
const MEMORY_MAX_BYTES = 64 * 1024 * 1024;

export interface StoredResponse {
  tenant: string;
  /** The conversation without instructions (they are not carried over, as in OpenAI's API), answer included. */
  messages: ChatMessage[];
  /** The Response object as it was returned. */
  response: Record<string, unknown>;
}

/** Whether `put` kept the entry, and if not why (a store that cannot be reached throws instead). */
export type PutResult = { stored: true } | { stored: false; reason: string };

export interface ResponseStore {
  get(id: string): Promise<StoredResponse | undefined>;
  put(id: string, value: StoredResponse): Promise<PutResult>;
  delete(id: string): Promise<boolean>;
}

/** An entry's JSON and its size in UTF-8 bytes, or why it is too large to keep. */
function encode(value: StoredResponse, maxBytes: number): { json: string; bytes: number } | { stored: false; reason: string } {
  const json = JSON.stringify(value);
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes) return { stored: false, reason: `the entry is ${bytes} bytes, over the ${maxBytes}-byte limit of a stored response` };
  return { json, bytes };
}

export interface MemoryStoreOptions {
  ttlMs?: number;
  /** Total size of the entries' JSON. */
  maxBytes?: number;
  maxEntries?: number;
  /** Largest single entry (at most maxBytes). */
  maxEntryBytes?: number;
}

/**
 * Entries in this process, oldest out when the budget (bytes and count) is full — but fairly between
 * tenants: a tenant holding more than its fair share (the budget divided by the number of tenants
 * holding entries) makes room by dropping its own oldest entries, so one tenant's long chains or many
 * small answers never evict everyone else's. A tenant alone may use the whole budget.
 */
export class MemoryResponseStore implements ResponseStore {
  /** In insertion order, which is expiry order too (one TTL). */
  private readonly entries = new Map<string, { value: StoredResponse; expires: number; bytes: number }>();
  /** Per tenant: its entries' ids (in insertion order) and their bytes. */
  private readonly tenants = new Map<string, { ids: Set<string>; bytes: number }>();
  private bytes = 0;
  private readonly ttlMs: number;
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly maxEntryBytes: number;

  constructor(opts: MemoryStoreOptions = {}) {
    this.ttlMs = opts.ttlMs ?? RESPONSE_TTL_S * 1000;
    this.maxBytes = opts.maxBytes ?? MEMORY_MAX_BYTES;
    this.maxEntries = opts.maxEntries ?? MEMORY_MAX;
    this.maxEntryBytes = Math.min(opts.maxEntryBytes ?? MAX_ENTRY_BYTES, this.maxBytes);
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    const e = this.entries.get(id);
    if (!e) return undefined;
    if (e.expires <= Date.now()) {
      this.drop(id);
      return undefined;
    }
    return e.value;
  }

  async put(id: string, value: StoredResponse): Promise<PutResult> {
    const encoded = encode(value, this.maxEntryBytes);
    // Too large: not stored, and nothing else is evicted for it.
    if (!('bytes' in encoded)) return encoded;
    const { bytes } = encoded;
    this.drop(id);
    const now = Date.now();
    for (const [key, e] of this.entries) {
      if (e.expires > now) break;
      this.drop(key);
    }
    while (this.entries.size >= this.maxEntries || this.bytes + bytes > this.maxBytes) {
      const own = this.tenants.get(value.tenant);
      const holders = this.tenants.size + (own ? 0 : 1);
      const overShare = own !== undefined && (own.bytes + bytes > this.maxBytes / holders || own.ids.size + 1 > this.maxEntries / holders);
      // Over its share, the tenant's own oldest goes; else the oldest of all (a Map iterates in insertion order).
      const victim = overShare ? own.ids.values().next().value : this.entries.keys().next().value;
      if (victim === undefined) break;
      this.drop(victim);
    }
    this.entries.set(id, { value, expires: now + this.ttlMs, bytes });
    this.bytes += bytes;
    let t = this.tenants.get(value.tenant);
    if (!t) this.tenants.set(value.tenant, (t = { ids: new Set<string>(), bytes: 0 }));
    t.ids.add(id);
    t.bytes += bytes;
    return { stored: true };
  }

  async delete(id: string): Promise<boolean> {
    return this.drop(id);
  }

  private drop(id: string): boolean {
    const e = this.entries.get(id);
    if (!e) return false;
    this.entries.delete(id);
    this.bytes -= e.bytes;
    const t = this.tenants.get(e.value.tenant);
    if (t) {
      t.ids.delete(id);
      t.bytes -= e.bytes;
      if (t.ids.size === 0) this.tenants.delete(e.value.tenant);
    }
    return true;
  }
}

export class RedisResponseStore implements ResponseStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlS = RESPONSE_TTL_S,
    private readonly maxEntryBytes = MAX_ENTRY_BYTES,
  ) {}

  private key(id: string): string {
    return `${this.prefix}response:${id}`;
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    const raw = await this.redis.get(this.key(id));
    return raw ? (JSON.parse(raw) as StoredResponse) : undefined;
  }

  async put(id: string, value: StoredResponse): Promise<PutResult> {
    const encoded = encode(value, this.maxEntryBytes);
    if (!('json' in encoded)) return encoded;
    await this.redis.set(this.key(id), encoded.json, 'EX', this.ttlS);
    return { stored: true };
  }

  async delete(id: string): Promise<boolean> {
    return (await this.redis.del(this.key(id))) === 1;
  }
}
