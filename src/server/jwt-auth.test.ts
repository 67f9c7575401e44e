import { createServer, type Server } from 'node:http';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jwtSchema } from '../config/schema.js';
import { createJwtVerifier } from './jwt-auth.js';

const secret = 'a-shared-secret-of-at-least-32-characters!';
const key = new TextEncoder().encode(secret);
const now = () => Math.floor(Date.now() / 1000);

function hs(claims: Record<string, unknown>, header: Record<string, unknown> = {}) {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', ...header });
}

describe('HS256 JWTs', () => {
  let verify: Awaited<ReturnType<typeof createJwtVerifier>>;
  beforeAll(async () => {
    verify = await createJwtVerifier(jwtSchema.parse({ algorithm: 'HS256', secret, issuer: 'https://issuer.test', audience: 'inferenceflow', clock_tolerance_s: 0 }));
  });
  const good = () => hs({ sub: 'alice', team: 'red', models: ['gpt-4o-mini'], rpm: 7 }).setIssuer('https://issuer.test').setAudience('inferenceflow').setExpirationTime('5m');

  it('maps claims to the tenant, user, team, models and limits', async () => {
    const tenant = await verify(await good().sign(key));
    expect(tenant).toEqual({ id: 'jwt:u:alice', kind: 'jwt', userId: 'alice', teamId: 'red', allowedModels: ['gpt-4o-mini'], limits: { rpm: 7 } });
  });

  it('keeps a tenant claim and a lone subject of the same name apart', async () => {
    const sign = (claims: Record<string, unknown>) => hs(claims).setIssuer('https://issuer.test').setAudience('inferenceflow').setExpirationTime('5m').sign(key);
    const member = await verify(await sign({ tenant: 'acme', sub: 'alice' }));
    const lone = await verify(await sign({ sub: 'acme' }));
    expect(member).toMatchObject({ id: 'jwt:t:acme', userId: 'acme/alice' });
    expect(lone).toMatchObject({ id: 'jwt:u:acme', userId: 'acme' });
    expect(await verify(await sign({ tenant: 'acme' }))).toMatchObject({ id: 'jwt:t:acme' });
  });

  it('never gives a lone user, or another tenant, the user and team ids of a tenant member', async () => {
    const sign = (claims: Record<string, unknown>) => hs(claims).setIssuer('https://issuer.test').setAudience('inferenceflow').setExpirationTime('5m').sign(key);
    const member = await verify(await sign({ tenant: 'acme', sub: 'alice', team: 'red' }));
    const lone = await verify(await sign({ sub: 'acme/alice', team: 'acme/red' }));
    const nested = await verify(await sign({ tenant: 'acme/alice', sub: 'x' }));
    const sibling = await verify(await sign({ tenant: 'acme', sub: 'alice/x' }));
    expect(member).toMatchObject({ userId: 'acme/alice', teamId: 'acme/red' });
    expect(lone).toMatchObject({ id: 'jwt:u:acme%2Falice', userId: 'acme%2Falice', teamId: 'acme%2Fred' });
    // The tenant "acme/alice" with user "x" is not tenant "acme" with user "alice/x".
    expect(nested.userId).toBe('acme%2Falice/x');
    expect(sibling.userId).toBe('acme/alice/x');
    // Ordinary names (e-mail addresses included) are untouched.
    expect(await verify(await sign({ sub: 'bob@example.com' }))).toMatchObject({ userId: 'bob@example.com' });
    expect(await verify(await sign({ sub: '100%' }))).toMatchObject({ userId: '100%25' });
  });

  const rejected: [string, () => Promise<string>, RegExp][] = [
    ['an expired token', () => good().setExpirationTime(now() - 10).sign(key), /expired/],
    ['a not-yet-valid token', () => good().setNotBefore(now() + 600).sign(key), /not valid yet/],
    ['a wrong audience', () => good().setAudience('someone-else').sign(key), /"aud"/],
    ['a wrong issuer', () => good().setIssuer('https://evil.test').sign(key), /"iss"/],
    ['a token without exp', () => hs({ sub: 'alice' }).setIssuer('https://issuer.test').setAudience('inferenceflow').sign(key), /"exp"/],
    ['a forged signature', () => good().sign(new TextEncoder().encode('another-secret-of-at-least-32-characters')), /signature/],
    ['alg: none', async () => new UnsecuredJWT({ sub: 'alice', aud: 'inferenceflow', iss: 'https://issuer.test' }).setExpirationTime('5m').encode(), /algorithm|malformed/],
    [
      'a tampered payload',
      async () => {
        const [h, , s] = (await good().sign(key)).split('.');
        const payload = Buffer.from(JSON.stringify({ sub: 'root', aud: 'inferenceflow', iss: 'https://issuer.test', exp: now() + 300 })).toString('base64url');
        return `${h}.${payload}.${s}`;
      },
      /signature/,
    ],
  ];
  for (const [name, make, message] of rejected) {
    it(`rejects ${name} with invalid_api_key`, async () => {
      const err = await verify(await make()).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'invalid_api_key', status: 401 });
      expect((err as Error).message).toMatch(message);
    });
  }
});

describe('asymmetric JWTs', () => {
  it('verifies ES256 with a PEM key and refuses an HS256 token made from that public key (algorithm pinned)', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const pem = await exportSPKI(publicKey);
    const verify = await createJwtVerifier(jwtSchema.parse({ algorithm: 'ES256', public_key: pem }));
    const token = await new SignJWT({ sub: 'bob' }).setProtectedHeader({ alg: 'ES256' }).setExpirationTime('5m').sign(privateKey);
    expect((await verify(token)).userId).toBe('bob');
    const confused = await new SignJWT({ sub: 'mallory' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(pem));
    await expect(verify(confused)).rejects.toMatchObject({ code: 'invalid_api_key' });
  });

  describe('RS256 from a JWKS URL', () => {
    let server: Server;
    let url: string;
    let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
    beforeAll(async () => {
      const pair = await generateKeyPair('RS256');
      privateKey = pair.privateKey;
      const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
      server = createServer((_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: [jwk] }));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const addr = server.address() as { port: number };
      url = `http://127.0.0.1:${addr.port}/.well-known/jwks.json`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it('accepts a token signed by a key in the set and rejects one from an unknown key', async () => {
      const verify = await createJwtVerifier(jwtSchema.parse({ algorithm: 'RS256', jwks_url: url }));
      const ok = await new SignJWT({ sub: 'carol', tenant: 'acme' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setExpirationTime('5m').sign(privateKey);
      expect(await verify(ok)).toMatchObject({ id: 'jwt:t:acme', userId: 'acme/carol' });
      const stranger = (await generateKeyPair('RS256')).privateKey;
      const bad = await new SignJWT({ sub: 'eve' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setExpirationTime('5m').sign(stranger);
      await expect(verify(bad)).rejects.toMatchObject({ code: 'invalid_api_key' });
    });
  });

  describe('RS256 from a JWKS URL that fails', () => {
    let server: Server;
    let base: string;
    let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
    let firstJwk: Record<string, unknown>;
    beforeAll(async () => {
      const pair = await generateKeyPair('RS256');
      privateKey = pair.privateKey;
      const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
      firstJwk = jwk;
      server = createServer((req, res) => {
        if (req.url === '/down') res.writeHead(503).end('maintenance');
        else if (req.url === '/html') res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>');
        else if (req.url === '/not-a-set') res.writeHead(200, { 'content-type': 'application/json' }).end('{"hello":"world"}');
        else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    const token = (kid = 'k1') => new SignJWT({ sub: 'carol' }).setProtectedHeader({ alg: 'RS256', kid }).setExpirationTime('5m').sign(privateKey);

    it('answers 503 jwks_unavailable with Retry-After, not 401, when the key set cannot be fetched', async () => {
      // A port nothing listens on: a server closed at once.
      const closed = createServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const refused = `http://127.0.0.1:${(closed.address() as { port: number }).port}/jwks.json`;
      await new Promise<void>((r) => closed.close(() => r()));
      for (const url of [`${base}/down`, `${base}/html`, `${base}/not-a-set`, refused]) {
        const verify = await createJwtVerifier(jwtSchema.parse({ algorithm: 'RS256', jwks_url: url }));
        const err = await verify(await token()).catch((e: unknown) => e);
        expect(err, url).toMatchObject({ code: 'jwks_unavailable', status: 503, retryAfterMs: 1000 });
        expect((err as Error).message).toContain('auth.jwt.jwks_url');
      }
    });

    it('keeps verifying with the last key set fetched while a refetch fails, and asks again only after a pause', async () => {
      let down = false;
      let fetches = 0;
      const jwk = { ...(await exportJWK((await generateKeyPair('RS256')).publicKey)), kid: 'other', alg: 'RS256' };
      const flaky = createServer((_req, res) => {
        fetches++;
        if (down) res.writeHead(503).end('maintenance');
        else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk, firstJwk] }));
      });
      await new Promise<void>((r) => flaky.listen(0, '127.0.0.1', r));
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        const verify = await createJwtVerifier(jwtSchema.parse({ algorithm: 'RS256', jwks_url: `http://127.0.0.1:${(flaky.address() as { port: number }).port}/jwks.json` }));
        const long = (kid = 'k1') => new SignJWT({ sub: 'carol' }).setProtectedHeader({ alg: 'RS256', kid }).setExpirationTime('2h').sign(privateKey);
        expect(await verify(await long())).toMatchObject({ userId: 'carol' });
        expect(fetches).toBe(1);
        // The identity provider goes down, and jose's cached set (10 min) grows old.
        down = true;
        vi.setSystemTime(Date.now() + 11 * 60_000);
        expect(await verify(await long())).toMatchObject({ userId: 'carol' });
        expect(fetches).toBe(2);
        // Within the pause nothing is asked; a token whose key the old set lacks may be newer than it: 503, not 401.
        expect(await verify(await long())).toMatchObject({ userId: 'carol' });
        await expect(verify(await long('rotated'))).rejects.toMatchObject({ code: 'jwks_unavailable', status: 503 });
        expect(fetches).toBe(2);
        // After it, the set is asked for again, and a recovered provider's answer is used.
        down = false;
        vi.setSystemTime(Date.now() + 31_000);
        expect(await verify(await long())).toMatchObject({ userId: 'carol' });
        expect(fetches).toBe(3);
      } finally {
        vi.useRealTimers();
        await new Promise<void>((r) => flaky.close(() => r()));
      }
    });

    it('still answers 401 when the key set is fetched but no key in it matches the token', async () => {
      const verify = await createJwtVerifier(jwtSchema.parse({ algorithm: 'RS256', jwks_url: `${base}/jwks.json` }));
      await expect(verify(await token('unknown-kid'))).rejects.toMatchObject({ code: 'invalid_api_key', status: 401 });
      const stranger = (await generateKeyPair('RS256')).privateKey;
      const forged = await new SignJWT({ sub: 'eve' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setExpirationTime('5m').sign(stranger);
      await expect(verify(forged)).rejects.toMatchObject({ code: 'invalid_api_key', status: 401 });
      expect(await verify(await token())).toMatchObject({ userId: 'carol' });
    });
  });
});
