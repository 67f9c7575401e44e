// Stored Responses (`store`, OpenAI's default): the conversation a response ended, so a later request
// can continue it with `previous_response_id`, and the Response object for GET /v1/responses/{id}.
// Kept in Redis when the gateway has it (every replica sees them), else in this process (bounded).
// Entries belong to the tenant that made them and expire after RESPONSE_TTL_S.
import type { ChatMessage } from '../canonical/chat.js';
import type { RedisClient } from '../store/redis.js';

export const RESPONSE_TTL_S = 86_400;
const MEMORY_MAX = 10_000;

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
  private readonly entries = new Map<string, { value: StoredResponse; expires: number }>();

  constructor(private readonly ttlMs = RESPONSE_TTL_S * 1000) {}

  async get(id: string): Promise<StoredResponse | undefined> {
    const e = this.entries.get(id);
    if (!e) return undefined;
    if (e.expires <= Date.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return e.value;
  }

  async put(id: string, value: StoredResponse): Promise<void> {
    // Oldest first out when full (a Map iterates in insertion order).
    if (this.entries.size >= MEMORY_MAX) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(id, { value, expires: Date.now() + this.ttlMs });
  }

  async delete(id: string): Promise<boolean> {
    return this.entries.delete(id);
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
