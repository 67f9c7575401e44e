// Start-up warnings about a JWT configuration that checks less than it looks: a public key (as from
// an identity provider) without an audience or issuer accepts tokens made for other applications.
import { Writable } from 'node:stream';
import { exportSPKI, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/telemetry/logger.js';
import { startTestGateway } from './helpers/gateway.js';

async function startupWarnings(jwt: Record<string, unknown>): Promise<string[]> {
  const lines: { level: string; msg: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as { level: string; msg: string });
      cb();
    },
  });
  const gw = await startTestGateway({ logger: createLogger('info', stream), config: { auth: { jwt } } });
  await gw.close();
  return lines.filter((l) => l.level === 'warn' && l.msg.startsWith('auth.jwt:')).map((l) => l.msg);
}

describe('a JWT configuration', () => {
  it('with a public key and no audience or issuer is warned about at start-up, each by name', async () => {
    const { publicKey } = await generateKeyPair('RS256');
    const public_key = await exportSPKI(publicKey);
    const bare = await startupWarnings({ algorithm: 'RS256', public_key });
    expect(bare).toHaveLength(2);
    expect(bare[0]).toMatch(/no audience.*"aud" is not checked/);
    expect(bare[1]).toMatch(/no issuer.*"iss" is not checked/);
    expect(await startupWarnings({ algorithm: 'RS256', public_key, audience: 'inferenceflow' })).toEqual([expect.stringMatching(/no issuer/)]);
    expect(await startupWarnings({ algorithm: 'RS256', public_key, audience: 'inferenceflow', issuer: 'https://idp.test' })).toEqual([]);
    // A shared HS256 secret is the gateway's own: nobody else signs with it.
    expect(await startupWarnings({ algorithm: 'HS256', secret: 'a-shared-secret-of-at-least-32-characters!' })).toEqual([]);
  });
});
