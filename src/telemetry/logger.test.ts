import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createAccessLogger, createLogger, scrubSecrets } from './logger.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, log: createLogger('info', stream) };
}

describe('logger redaction', () => {
  const secrets = ['sk-live-abcdef123456', 'whsec_verysecret', 'Bearer tok-9876543210', 'hunter2-password', 'x-key-1234567'];

  it('never writes credentials, wherever they sit in the logged object', () => {
    const { lines, log } = capture();
    log.info({ headers: { authorization: secrets[2], 'x-api-key': secrets[4], 'content-type': 'application/json' } }, 'incoming');
    log.info({ req: { headers: { authorization: secrets[2] } } }, 'nested request');
    log.info({ config: { providers: { openai: { api_key: secrets[0], base_url: 'https://api.openai.com/v1' } } } }, 'config');
    log.info({ webhook: { endpoint: { url: 'https://example.test/hook', secret: secrets[1] } }, signing_secret: secrets[1] }, 'webhook');
    log.info({ list: [{ password: secrets[3] }, { token: secrets[0] }] }, 'array');
    log.warn({ upstream: { request: { headers: { Authorization: secrets[2] } } } }, 'deep header');
    const out = lines.join('\n');
    for (const s of secrets) expect(out).not.toContain(s.replace('Bearer ', ''));
    expect(out).toContain('[redacted]');
    // What is not secret survives.
    expect(out).toContain('https://api.openai.com/v1');
    expect(out).toContain('application/json');
  });

  it('keeps token counts, which are not credentials', () => {
    expect(scrubSecrets({ tokens: { input: 3, output: 4 }, max_tokens: 10 })).toEqual({ tokens: { input: 3, output: 4 }, max_tokens: 10 });
  });

  it('leaves the input object untouched', () => {
    const input = { headers: { authorization: 'Bearer abc' } };
    const out = scrubSecrets(input) as typeof input;
    expect(out.headers.authorization).toBe('[redacted]');
    expect(input.headers.authorization).toBe('Bearer abc');
  });
});

describe('access logger', () => {
  it('writes to the same stream in the same line format, at the same level', () => {
    const { lines, log } = capture();
    const access = createAccessLogger(log);
    log.info({ a: 1 }, 'general');
    access.info({ reqId: 'r1', status: 200, tokens: { input: 3, output: 4 } }, 'request');
    access.debug({ reqId: 'r2' }, 'below the level');
    expect(lines).toHaveLength(2);
    const [general, line] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(Object.keys(line ?? {}).slice(0, 3)).toEqual(Object.keys(general ?? {}).slice(0, 3));
    expect(line).toMatchObject({ level: 'info', service: 'inferenceflow', reqId: 'r1', status: 200, tokens: { input: 3, output: 4 }, msg: 'request' });
    expect(typeof line?.time).toBe('string');
  });
});
