// JWT bearer tokens (seed 002): HS256, RS256 or ES256 through jose, the algorithm pinned by config
// (so `alg: none` and algorithm-confusion tokens fail), `exp` and `nbf` checked, `iss` and `aud` when
// an issuer and an audience are configured (jwtConfigWarnings says at start-up when not), and claims
// mapped to tenant, user, team, allowed models and limits. Keys come from a shared secret,
// a PEM public key, or a JWKS URL (fetched and cached by jose).
import { createLocalJWKSet, createRemoteJWKSet, errors, importSPKI, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { JwtConfig } from '../config/schema.js';
import type { Tenant } from '../gateway/context.js';
import { GatewayError } from './errors.js';

export type JwtVerifier = (token: string) => Promise<Tenant>;

/** A compact JWS: three base64url parts, the header starting `{"` (eyJ). */
export function looksLikeJwt(token: string): boolean {
  return /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/.test(token);
}

/**
 * What start-up should warn about in a JWT configuration: a public key or key set (RS256, ES256)
 * without an audience or an issuer. An identity provider signs the tokens of every application it
 * serves with the same keys, so without `aud` a token it issued for another application is accepted
 * here, and without `iss` a key set shared by several issuers accepts all of their tokens. (A
 * shared HS256 secret is this gateway's own.) Not an error: configurations without them exist.
 */
export function jwtConfigWarnings(cfg: JwtConfig): string[] {
  if (cfg.algorithm === 'HS256') return [];
  const keys = cfg.jwks_url ? `the key set at ${cfg.jwks_url}` : 'the configured public key';
  const out: string[] = [];
  if (!cfg.audience) out.push(`auth.jwt: no audience (auth.jwt.audience, JWT_AUDIENCE) is configured, so "aud" is not checked: any token ${keys} verifies is accepted, including one its issuer made for another application. Set the audience this gateway's tokens carry.`);
  if (!cfg.issuer) out.push(`auth.jwt: no issuer (auth.jwt.issuer, JWT_ISSUER) is configured, so "iss" is not checked: a token from any issuer whose keys ${keys} holds is accepted. Set the issuer.`);
  return out;
}

export async function createJwtVerifier(cfg: JwtConfig): Promise<JwtVerifier> {
  let key: Uint8Array | Awaited<ReturnType<typeof importSPKI>> | JWTVerifyGetKey;
  if (cfg.algorithm === 'HS256') key = new TextEncoder().encode(cfg.secret ?? '');
  else if (cfg.public_key) key = await importSPKI(cfg.public_key.replace(/\\n/g, '\n'), cfg.algorithm);
  else key = keySetOrUnavailable(createRemoteJWKSet(new URL(cfg.jwks_url as string), { cooldownDuration: 30_000, cacheMaxAge: 600_000 }));
  const options = {
    algorithms: [cfg.algorithm],
    clockTolerance: cfg.clock_tolerance_s,
    ...(cfg.issuer ? { issuer: cfg.issuer } : {}),
    ...(cfg.audience ? { audience: cfg.audience } : {}),
    ...(cfg.require_exp ? { requiredClaims: ['exp'] } : {}),
  };
  const c = cfg.claims;
  return async function verifyJwt(token) {
    let payload: JWTPayload;
    try {
      // One call shape for a static key and a key set (jose overloads them separately).
      payload =
        typeof key === 'function'
          ? (await jwtVerify(token, key, options)).payload
          : (await jwtVerify(token, key as Uint8Array, options)).payload;
    } catch (err) {
      if (err instanceof KeySetUnavailable) {
        throw new GatewayError('jwks_unavailable', { retryAfterMs: 1000, cause: err.cause, message: `The key set that verifies bearer tokens (auth.jwt.jwks_url) could not be fetched: ${err.message}; retry shortly.` });
      }
      throw new GatewayError('invalid_api_key', { message: `The bearer token was rejected: ${reason(err)}.` });
    }
    const str = (name: string) => (typeof payload[name] === 'string' && payload[name] !== '' ? (payload[name] as string) : undefined);
    const num = (name: string) => (typeof payload[name] === 'number' && (payload[name] as number) > 0 ? Math.floor(payload[name] as number) : undefined);
    const tenantClaim = str(c.tenant);
    // Within a tenant claim, user and team names are the tenant's own ("alice" of acme is not "alice"
    // of globex): they are qualified by it, `<tenant>/<name>`, for budgets, rate limits and the ledger
    // alike. A `/` (and `%`) in the tenant, or in a name standing alone, is percent-escaped, so the
    // first `/` always ends the tenant and a lone `{sub: "acme/alice"}` (→ `acme%2Falice`) is never
    // acme's alice.
    const within = (name: string | undefined) => (name === undefined ? undefined : tenantClaim ? `${escapeSlash(tenantClaim)}/${name}` : escapeSlash(name));
    const userId = within(str(c.user));
    const teamId = within(str(c.team));
    if (!tenantClaim && !userId) throw new GatewayError('invalid_api_key', { message: `The bearer token was rejected: it names no user (claim "${c.user}").` });
    // Tenants named by the tenant claim and users standing alone live in separate namespaces, so
    // {tenant: "acme", sub: "alice"} and {sub: "acme"} never share stored responses, cache entries,
    // batches, spend or limits.
    const id = tenantClaim ? `jwt:t:${tenantClaim}` : `jwt:u:${userId as string}`;
    const models = Array.isArray(payload[c.models]) ? (payload[c.models] as unknown[]).filter((m): m is string => typeof m === 'string') : undefined;
    const rpm = num(c.rpm);
    const tpm = num(c.tpm);
    return {
      id,
      kind: 'jwt',
      ...(userId ? { userId } : {}),
      ...(teamId ? { teamId } : {}),
      ...(models ? { allowedModels: models } : {}),
      limits: { ...(rpm ? { rpm } : {}), ...(tpm ? { tpm } : {}) },
    };
  };
}

/** The key set could not be fetched or read: the identity provider's failure, not the token's. */
class KeySetUnavailable extends Error {}

/** What a key set lookup throws that is about the token: no key, several keys, or a key it cannot use. */
const TOKEN_FAULTS = [errors.JWKSNoMatchingKey, errors.JWKSMultipleMatchingKeys, errors.JOSENotSupported, errors.JWSInvalid, errors.JWTInvalid, errors.JOSEAlgNotAllowed];

/** How long after a failed fetch of the key set the last one known is used without asking again, ms. */
export const STALE_KEYS_MS = 30_000;

/**
 * A remote key set whose fetch failures (refused, timed out, not 200, not a key set) are
 * KeySetUnavailable: a 503 the client retries, where a 401 would tell it its credentials are bad.
 * Once a key set was fetched, a failed refetch (jose refetches every cacheMaxAge) verifies with the
 * last one known instead — the identity provider's outage does not fail the tokens its keys still
 * sign — and for STALE_KEYS_MS after it uses that set without asking again, so requests do not each
 * wait out a fetch's timeout.
 */
function keySetOrUnavailable(remote: ReturnType<typeof createRemoteJWKSet>, now: () => number = Date.now): JWTVerifyGetKey {
  let lastKnown: ReturnType<typeof createLocalJWKSet> | undefined;
  let failedUntil = 0;
  // A token whose key the stale set lacks may be signed by a key added since: unknown, not refused.
  const stale = async (known: ReturnType<typeof createLocalJWKSet>, header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]) => {
    try {
      return await known(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) throw new KeySetUnavailable('no key in the last key set fetched matches the token, and a new one could not be fetched', { cause: err });
      throw err;
    }
  };
  return async (header, token) => {
    if (lastKnown && now() < failedUntil) return stale(lastKnown, header, token);
    try {
      // jose refetches when its set is older than cacheMaxAge, or when no key matches outside its
      // cooldown: either way its set changed. Copied then only (jwks() clones it, and a new local set
      // imports its keys again).
      const wasFresh = remote.fresh;
      const wasCooling = remote.coolingDown;
      const found = await remote(header, token);
      if (!lastKnown || !wasFresh || (!wasCooling && remote.coolingDown)) {
        const jwks = remote.jwks();
        if (jwks) lastKnown = createLocalJWKSet(jwks);
      }
      return found;
    } catch (err) {
      if (TOKEN_FAULTS.some((fault) => err instanceof fault)) throw err;
      if (lastKnown) {
        failedUntil = now() + STALE_KEYS_MS;
        return stale(lastKnown, header, token);
      }
      const detail = err instanceof errors.JWKSTimeout ? 'it timed out' : err instanceof errors.JWKSInvalid ? 'it is not a JSON Web Key Set' : ((err as Error).message ?? String(err));
      throw new KeySetUnavailable(detail, { cause: err });
    }
  };
}

/** `%` → `%25`, `/` → `%2F`: a name that cannot be mistaken for a tenant-qualified one. */
function escapeSlash(name: string): string {
  return name.replace(/[%/]/g, encodeURIComponent);
}

function reason(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'it has expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'it is not valid yet';
    return `claim "${err.claim}" failed validation`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'its algorithm is not accepted';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'its signature does not verify';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key in the key set matches it';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'it is malformed';
  return 'it could not be verified';
}
