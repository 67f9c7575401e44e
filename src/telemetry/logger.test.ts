import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { multistream, pino } from 'pino';
import { AccessLogger, createLogger, scrubSecrets } from './logger.js';

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

  it("writes an error's message and stack but not the arguments of the Redis command it carries (a cached answer, its vector)", () => {
    const { lines, log } = capture();
    const err = Object.assign(new Error('OOM command not allowed when used memory > maxmemory'), { command: { name: 'evalsha', args: ['sha', '1', 'key', 'the cached answer: patient record 123'] } });
    log.warn({ err }, 'cache store failed');
    const line = JSON.parse(lines[0] as string) as { err: { message: string; command: unknown } };
    expect(line.err.message).toContain('OOM');
    expect(line.err.command).toEqual({ name: 'evalsha' });
    expect(lines[0]).not.toContain('patient record');
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
  const fields = {
    reqId: 'r1',
    method: 'POST',
    url: '/v1/chat/completions?x="quoted"\nnext',
    route: '/v1/chat/completions',
    status: 200,
    tenant: 'team-a',
    model: 'gpt-4o-mini',
    provider: 'openai',
    deployment: 'openai/gpt-4o-mini',
    cache: 'miss',
    costUsd: 0.000123,
    tokens: { input: 3, output: 4 },
    attempts: 2,
    latencyMs: 12.34,
    outcome: 'ok',
  };

  it('writes the line pino would, key for key, on the same stream', () => {
    const { lines, log } = capture();
    log.info(fields, 'request');
    new AccessLogger(log).request(fields);
    expect(lines).toHaveLength(2);
    const [viaPino, line] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(Object.keys(line!)).toEqual(Object.keys(viaPino!));
    expect({ ...line, time: 0 }).toEqual({ ...viaPino, time: 0 });
    expect(new Date(line!.time as string).getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  it('lets pino write to a stream that routes by level (multistream), so the line lands where pino would put it', () => {
    const info: string[] = [];
    const warn: string[] = [];
    const sink = (into: string[]) => new Writable({ write: (c: Buffer, _e, cb) => (into.push(c.toString()), cb()) });
    const log = pino({ level: 'info' }, multistream([{ level: 'info', stream: sink(info) }, { level: 'warn', stream: sink(warn) }]));
    log.warn('a warning first');
    new AccessLogger(log).request(fields);
    expect(warn).toHaveLength(1);
    expect(info).toHaveLength(2);
    expect(JSON.parse(info[1]!)).toMatchObject({ reqId: 'r1', status: 200, msg: 'request' });
  });

  it('leaves out what is unknown and writes nothing below its level', () => {
    const { lines, log } = capture();
    const access = new AccessLogger(log);
    access.request({ reqId: 'r2', method: 'GET', url: '/nope', status: 404, latencyMs: 0.5, outcome: 'client_error' });
    log.level = 'warn';
    access.request({ ...fields, reqId: 'r3' });
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
      { level: 'info', time: expect.any(String), service: 'inferenceflow', reqId: 'r2', method: 'GET', url: '/nope', status: 404, latencyMs: 0.5, outcome: 'client_error', msg: 'request' },
    ]);
  });
});
