// Stored Responses (`store`, OpenAI's default): the conversation a response ended, so a later request
// can continue it with `previous_response_id`, and the Response object for GET /v1/responses/{id}.
// Kept in Redis when the gateway has it (every replica sees them), else in this process (bounded).
// Entries belong to the tenant that made them and expire after RESPONSE_TTL_S.
import type { ChatMessage } from '../canonical/chat.js';
import type { RedisClient } from '../store/redis.js';

export const RESPONSE_TTL_S = 86_400;
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

export interface ResponseStore {
  get(id: string): Promise<StoredResponse | undefined>;
  put(id: string, value: StoredResponse): Promise<void>;
  delete(id: string): Promise<boolean>;
}

export class MemoryResponseStore implements ResponseStore {
  private readonly entries = new Map<string, { value: StoredResponse; expires: number; bytes: number }>();
  private bytes = 0;

  constructor(
    private readonly ttlMs = RESPONSE_TTL_S * 1000,
    private readonly maxBytes = MEMORY_MAX_BYTES,
  ) {}

  async get(id: string): Promise<StoredResponse | undefined> {
    const e = this.entries.get(id);
    if (!e) return undefined;
    if (e.expires <= Date.now()) {
      this.drop(id);
      return undefined;
    }
    return e.value;
  }

  async put(id: string, value: StoredResponse): Promise<void> {
    const bytes = JSON.stringify(value).length * 2;
    this.drop(id);
    // Larger than the whole budget: not stored, and nothing else is evicted for it.
    if (bytes > this.maxBytes) return;
    // Expired entries, then the oldest, go first (a Map iterates in insertion order).
    const now = Date.now();
    for (const [key, e] of this.entries) {
      if (e.expires > now && this.entries.size < MEMORY_MAX && this.bytes + bytes <= this.maxBytes) break;
      this.drop(key);
    }
    this.entries.set(id, { value, expires: now + this.ttlMs, bytes });
    this.bytes += bytes;
  }

  async delete(id: string): Promise<boolean> {
    return this.drop(id);
  }

  private drop(id: string): boolean {
    const e = this.entries.get(id);
    if (!e) return false;
    this.entries.delete(id);
    this.bytes -= e.bytes;
    return true;
  }
}

export class RedisResponseStore implements ResponseStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ttlS = RESPONSE_TTL_S,
  ) {}

  private key(id: string): string {
    return `${this.prefix}response:${id}`;
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    const raw = await this.redis.get(this.key(id));
    return raw ? (JSON.parse(raw) as StoredResponse) : undefined;
  }

  async put(id: string, value: StoredResponse): Promise<void> {
    await this.redis.set(this.key(id), JSON.stringify(value), 'EX', this.ttlS);
  }

  async delete(id: string): Promise<boolean> {
    return (await this.redis.del(this.key(id))) === 1;
  }
}
