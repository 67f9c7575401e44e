// Who is calling. The baseline authenticator checks static bearer tokens in constant time; it takes
// the key from `Authorization: Bearer` or `x-api-key` (the Anthropic SDK's header). With no token
// configured every caller is the anonymous tenant (and the server stays on loopback).
import { hash, timingSafeEqual } from 'node:crypto';
import { ANONYMOUS, type Tenant } from '../gateway/context.js';
import { GatewayError } from './errors.js';

export interface AuthRequest {
  headers: Record<string, string | string[] | undefined>;
  ip?: string;
}

export interface Authenticator {
  /**
   * True when some credential is required (tokens, keys or JWT configured). When false, every caller
   * is the anonymous tenant: the server assigns it without calling `authenticate`.
   */
  readonly required: boolean;
  authenticate(req: AuthRequest): Promise<Tenant>;
}

/** The presented credential, from `Authorization: Bearer …` or `x-api-key`. */
export function presentedKey(headers: AuthRequest['headers']): string | undefined {
  const auth = headers.authorization;
  const value = Array.isArray(auth) ? auth[0] : auth;
  if (value) {
    const m = /^Bearer\s+(.+)$/i.exec(value.trim());
    if (m) return m[1]?.trim();
  }
  const apiKey = headers['x-api-key'];
  const k = Array.isArray(apiKey) ? apiKey[0] : apiKey;
  return k?.trim() || undefined;
}

function digest(value: string): Buffer {
  return hash('sha256', value, 'buffer');
}

/**
 * A constant-time check of the key a request presents against one secret (the admin token, the
 * metrics token); the secret's digest is made once.
 */
export function presentedTokenCheck(token: string): (headers: AuthRequest['headers']) => boolean {
  const want = digest(token);
  return (headers) => {
    const key = presentedKey(headers);
    return key !== undefined && timingSafeEqual(digest(key), want);
  };
}

export function createTokenAuthenticator(tokens: readonly string[]): Authenticator {
  const digests = tokens.map((t) => ({ digest: digest(t), id: `token:${digest(t).toString('hex').slice(0, 12)}` }));
  return {
    required: digests.length > 0,
    async authenticate(req) {
      if (digests.length === 0) return ANONYMOUS;
      const key = presentedKey(req.headers);
      if (!key) throw new GatewayError('missing_api_key');
      const d = digest(key);
      // Compare against every token so timing does not tell which one (or whether any) matched.
      let match: string | undefined;
      for (const t of digests) if (timingSafeEqual(d, t.digest)) match ??= t.id;
      if (!match) throw new GatewayError('invalid_api_key');
      return { id: match, kind: 'token' };
    },
  };
}

export interface CompositeAuthOptions {
  tokens: readonly string[];
  /** API keys: `prefix` tells them apart; `verify` resolves one (src/limits/keys.ts). */
  keys?: { prefix: string; verify(key: string, ip?: string): Promise<Tenant> };
  /** JWT bearer tokens (src/server/jwt-auth.ts). */
  jwt?: (token: string) => Promise<Tenant>;
}

/**
 * Static tokens, API keys and JWTs behind one Authenticator. The credential's shape picks the
 * verifier (a JWT's three base64url parts, the API-key prefix, else a static token), so a caller
 * never gets a second verifier's verdict and timing says nothing about which stores were tried.
 */
export function createCompositeAuthenticator(opts: CompositeAuthOptions): Authenticator {
  const tokens = createTokenAuthenticator(opts.tokens);
  const required = tokens.required || opts.keys !== undefined || opts.jwt !== undefined;
  return {
    required,
    async authenticate(req) {
      if (!required) return ANONYMOUS;
      const key = presentedKey(req.headers);
      if (!key) throw new GatewayError('missing_api_key');
      if (opts.jwt && /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/.test(key)) return opts.jwt(key);
      if (opts.keys && key.startsWith(opts.keys.prefix)) return opts.keys.verify(key, req.ip);
      if (!tokens.required) throw new GatewayError('invalid_api_key');
      return tokens.authenticate(req);
    },
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
