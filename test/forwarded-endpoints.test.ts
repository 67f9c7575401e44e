// Audio, images and moderations through the real server with the official `openai` client: each is
// forwarded to the model's OpenAI-compatible deployment with the model replaced by its upstream name
// (in JSON, and in the multipart form with the file byte for byte), and the upstream's answer comes
// back as it sent it (JSON, text, audio bytes with their content type). A failing deployment hands
// the request to the next, a group without an OpenAI-compatible deployment is refused, a key's
// requests-per-minute limit counts these requests, and an upstream's 400 comes back with its message.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipartBoundary, parseMultipart, type MultipartPart } from '../src/batching/jobs/multipart.js';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

const ADMIN = 'admin-token-for-forwarded-tests-0123';
// A WAV header and bytes no text decoding survives (NUL, 0xff, a lone CR LF and dashes).
const WAV = Buffer.concat([Buffer.from('RIFF\x24\x00\x00\x00WAVEfmt ', 'latin1'), Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x2d, 0x2d, 0x80, 0x01, 0x02])]);
const PNG = readFileSync(new URL('../src/providers/__fixtures__/images/wide.png', import.meta.url));
// What the speech stand-in answers, in three pieces.
const MP3 = [Buffer.from([0xff, 0xfb, 0x90, 0x64, 0x00]), Buffer.alloc(70_000, 0xaa), Buffer.from([0x00, 0x0d, 0x0a, 0xff])];

interface Received {
  path: string;
  contentType: string;
  raw: Buffer;
  /** The form's parts (multipart requests). */
  parts?: MultipartPart[];
  /** The JSON body (JSON requests). */
  json?: Record<string, unknown>;
  model?: string;
}

let upstream: Server;
const received: Received[] = [];
let gw: RunningServer;
let dir: string;
let client: OpenAI;
let apiKey: string;
/** The `held-tts` speech stand-in: released by the test after its first piece, and told when its connection closes. */
let release: () => void = () => undefined;
let heldClosed: Promise<void> = Promise.resolve();

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** OpenAI's API as its reference describes these endpoints' answers (and its error body). */
async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const raw = await readAll(req);
  const contentType = req.headers['content-type'] ?? '';
  const r: Received = { path: req.url ?? '', contentType, raw };
  const boundary = multipartBoundary(contentType);
  if (boundary) {
    r.parts = parseMultipart(raw, boundary);
    r.model = r.parts.find((p) => p.name === 'model')?.data.toString();
  } else if (raw.length) {
    r.json = JSON.parse(raw.toString()) as Record<string, unknown>;
    r.model = r.json.model as string;
  }
  received.push(r);
  const field = (name: string) => r.parts?.find((p) => p.name === name)?.data.toString();
  if (r.model === 'broken') return sendJson(res, 500, { error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } });
  if (r.model === 'picky') {
    return sendJson(res, 400, { error: { message: "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']", type: 'invalid_request_error', param: 'file', code: 'invalid_value' } });
  }
  switch (r.path) {
    case '/v1/audio/transcriptions':
    case '/v1/audio/translations':
      if (field('response_format') === 'text') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        return void res.end('Hello from the stand-in.\n');
      }
      return sendJson(res, 200, { text: 'Hello from the stand-in.', usage: { type: 'duration', seconds: 2 } });
    case '/v1/audio/speech': {
      res.writeHead(200, { 'content-type': 'audio/mpeg', 'transfer-encoding': 'chunked' });
      if (r.model === 'cut-tts') {
        // The server fails after the status and the first piece: the connection just ends.
        res.write(MP3[0]);
        return void setTimeout(() => res.socket?.destroy(), 20);
      }
      if (r.model === 'held-tts') {
        heldClosed = new Promise((resolve) => res.once('close', () => resolve()));
        res.write(MP3[0]);
        // The rest only once the test has seen the first piece come through (or never, if the client left).
        await new Promise<void>((resolve) => (release = resolve));
        res.write(MP3[1]);
        return void res.end(MP3[2]);
      }
      for (const piece of MP3) {
        res.write(piece);
        await new Promise((resolve) => setImmediate(resolve));
      }
      return void res.end();
    }
    case '/v1/images/generations':
    case '/v1/images/edits':
    case '/v1/images/variations':
      return sendJson(res, 200, { created: 1_713_833_628, data: [{ b64_json: Buffer.from(`image for ${r.model}`).toString('base64'), revised_prompt: 'a cat' }], usage: { total_tokens: 100, input_tokens: 50, output_tokens: 50, input_tokens_details: { text_tokens: 10, image_tokens: 40 } } });
    case '/v1/moderations':
      return sendJson(res, 200, {
        id: 'modr-0d9740456c391e43c445bf0f010940c7',
        model: r.model,
        results: [{ flagged: false, categories: { harassment: false, violence: false }, category_scores: { harassment: 0.0012, violence: 0.0004 }, category_applied_input_types: { harassment: ['text'], violence: ['text'] } }],
      });
    default:
      return sendJson(res, 404, { error: { message: `Invalid URL (POST ${r.path})`, type: 'invalid_request_error', param: null, code: null } });
  }
}

async function createKey(body: Record<string, unknown>): Promise<string> {
  const res = await request(`${gw.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.body.json()) as { key: string };
  return json.key;
}

const lastTo = (path: string) => received.filter((r) => r.path === path).at(-1) as Received;

beforeAll(async () => {
  upstream = createServer((req, res) => void answer(req, res).catch((err: unknown) => sendJson(res, 500, { error: { message: String(err) } })));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  dir = await mkdtemp(join(tmpdir(), 'if-forwarded-'));
  gw = await startTestGateway({
    config: {
      auth: { admin_token: ADMIN },
      database: { pglite_path: join(dir, 'db') },
      providers: { up: { type: 'openai', base_url: url, api_key: 'upstream-key' }, claude: { type: 'anthropic', api_key: 'unused', base_url: 'http://127.0.0.1:9' } },
      models: [
        { name: 'whisper', deployments: [{ provider: 'up', model: 'whisper-large-v3', id: 'w/up' }] },
        { name: 'tts', deployments: [{ provider: 'up', model: 'tts-upstream' }] },
        { name: 'held', deployments: [{ provider: 'up', model: 'held-tts' }] },
        { name: 'cut', deployments: [{ provider: 'up', model: 'cut-tts' }] },
        { name: 'img', deployments: [{ provider: 'up', model: 'gpt-image-upstream' }] },
        { name: 'omni-moderation-latest', deployments: [{ provider: 'up', model: 'omni-moderation-2024-09-26' }] },
        // Listed healthy-first, tried by priority: the broken one first.
        { name: 'failover', deployments: [{ provider: 'up', model: 'whisper-healthy', id: 'f/ok', priority: 1 }, { provider: 'up', model: 'broken', id: 'f/broken', priority: 0 }] },
        { name: 'claude-only', deployments: [{ provider: 'claude', model: 'claude-3-5-haiku-latest' }] },
        { name: 'picky', deployments: [{ provider: 'up', model: 'picky' }] },
      ],
    },
  });
  apiKey = await createKey({ name: 'forwarded' });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await new Promise((resolve) => upstream?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('forwarded OpenAI endpoints', () => {
  it('transcribes: the form reaches the deployment with its model replaced, the other fields kept and the file byte for byte', async () => {
    const { data, response } = await client.audio.transcriptions
      .create({ file: await toFile(WAV, 'clip.wav', { type: 'audio/wav' }), model: 'whisper', language: 'en', temperature: 0.2, prompt: 'A greeting.' })
      .withResponse();
    expect(data.text).toBe('Hello from the stand-in.');
    expect(response.headers.get('x-inferenceflow-deployment')).toBe('w/up');
    expect(response.headers.get('x-inferenceflow-model')).toBe('whisper-large-v3');
    const got = lastTo('/v1/audio/transcriptions');
    expect(got.contentType).toMatch(/^multipart\/form-data; boundary=/);
    const field = (name: string) => got.parts?.find((p) => p.name === name);
    expect(field('model')?.data.toString()).toBe('whisper-large-v3');
    expect(field('language')?.data.toString()).toBe('en');
    expect(field('temperature')?.data.toString()).toBe('0.2');
    expect(field('prompt')?.data.toString()).toBe('A greeting.');
    expect(field('file')?.filename).toBe('clip.wav');
    expect(field('file')?.contentType).toBe('audio/wav');
    expect(field('file')?.data.equals(WAV)).toBe(true);
  });

  it('passes a text transcription (response_format: text) back with its content type', async () => {
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(WAV, 'clip.wav', { type: 'audio/wav' }), model: 'whisper', response_format: 'text' }).withResponse();
    expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(data).toBe('Hello from the stand-in.\n');
    expect(lastTo('/v1/audio/transcriptions').parts?.find((p) => p.name === 'response_format')?.data.toString()).toBe('text');
  });

  it('speaks: the JSON goes up with the upstream model, the audio comes back byte for byte with its content type', async () => {
    const res = await client.audio.speech.create({ model: 'tts', input: 'Hello there.', voice: 'alloy', response_format: 'mp3' });
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.concat(MP3))).toBe(true);
    expect(lastTo('/v1/audio/speech').json).toEqual({ model: 'tts-upstream', input: 'Hello there.', voice: 'alloy', response_format: 'mp3' });
  });

  it('streams the audio through as it arrives, and a client that leaves cancels the upstream call', async () => {
    const speak = () =>
      request(`${gw.url}/v1/audio/speech`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'held', input: 'Hi.', voice: 'alloy' }) });
    // The first piece reaches the client while the upstream still holds the rest back.
    const res = await speak();
    expect(res.statusCode).toBe(200);
    const pieces = res.body[Symbol.asyncIterator]();
    const firstPiece = (await pieces.next()).value as Buffer;
    expect(firstPiece.equals(MP3[0] as Buffer)).toBe(true);
    release();
    const rest: Buffer[] = [];
    for (let r = await pieces.next(); !r.done; r = await pieces.next()) rest.push(r.value as Buffer);
    expect(Buffer.concat(rest).equals(Buffer.concat(MP3.slice(1)))).toBe(true);
    // A client that goes away after the first piece: the upstream's connection is closed.
    const left = await speak();
    const it2 = left.body[Symbol.asyncIterator]();
    await it2.next();
    const closed = heldClosed;
    left.body.destroy();
    // Bounded: a cancellation that never reaches the upstream fails here, not at the test's timeout.
    const gone = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000))]);
    expect(gone).toBe(true);
    release();
  });

  it('generates images (JSON)', async () => {
    const res = await client.images.generate({ model: 'img', prompt: 'a cat', n: 1, size: '1024x1024' });
    expect(Buffer.from(res.data?.[0]?.b64_json ?? '', 'base64').toString()).toBe('image for gpt-image-upstream');
    expect(lastTo('/v1/images/generations').json).toEqual({ model: 'gpt-image-upstream', prompt: 'a cat', n: 1, size: '1024x1024' });
  });

  it('edits an image: the PNG reaches the deployment byte for byte, with the prompt and the replaced model', async () => {
    const res = await client.images.edit({ model: 'img', image: await toFile(PNG, 'wide.png', { type: 'image/png' }), prompt: 'add a hat' });
    expect(res.data?.[0]?.revised_prompt).toBe('a cat');
    const got = lastTo('/v1/images/edits');
    expect(got.model).toBe('gpt-image-upstream');
    expect(got.parts?.find((p) => p.name === 'prompt')?.data.toString()).toBe('add a hat');
    const image = got.parts?.find((p) => p.filename === 'wide.png');
    expect(image?.data.equals(PNG)).toBe(true);
  });

  it('moderates with OpenAI\'s default model when none is named', async () => {
    const res = await client.moderations.create({ input: 'I want to hug you.' });
    expect(res.results[0]?.flagged).toBe(false);
    expect(res.model).toBe('omni-moderation-2024-09-26');
    expect(lastTo('/v1/moderations').json).toEqual({ model: 'omni-moderation-2024-09-26', input: 'I want to hug you.' });
  });

  it('moves on from a deployment that fails (500) to the next before answering', async () => {
    const before = received.length;
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(WAV, 'clip.wav', { type: 'audio/wav' }), model: 'failover' }).withResponse();
    expect(data.text).toBe('Hello from the stand-in.');
    expect(received.slice(before).map((r) => r.model)).toEqual(['broken', 'whisper-healthy']);
    // Each attempt got the file byte for byte.
    for (const r of received.slice(before)) expect(r.parts?.find((p) => p.name === 'file')?.data.equals(WAV)).toBe(true);
    expect(response.headers.get('x-inferenceflow-deployment')).toBe('f/ok');
  });

  it('refuses a model whose deployments cannot forward (an Anthropic one): 400 unsupported_capability', async () => {
    const before = received.length;
    const err = await client.moderations.create({ model: 'claude-only', input: 'hello' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect([e.status, e.code, e.param]).toEqual([400, 'unsupported_capability', 'model']);
    expect(received.length).toBe(before);
  });

  it('returns an upstream\'s 400 with its message', async () => {
    const err = await client.audio.transcriptions.create({ file: await toFile(WAV, 'clip.xyz'), model: 'picky' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.message).toContain('Invalid file format. Supported formats:');
    expect(e.code).toBe('upstream_rejected_request');
    expect(e.param).toBe('file');
  });

  it('counts these requests against a key\'s requests per minute', async () => {
    const limited = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: await createKey({ name: 'rpm-2', rpm: 2 }), maxRetries: 0 });
    await limited.moderations.create({ input: 'one' });
    await limited.images.generate({ model: 'img', prompt: 'two' });
    const before = received.length;
    const err = await limited.audio.speech.create({ model: 'tts', input: 'three', voice: 'alloy' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('rate_limit_exceeded');
    expect(received.length).toBe(before);
  });

  it('applies a key\'s allowed models', async () => {
    const narrow = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: await createKey({ name: 'tts-only', models: ['tts'] }), maxRetries: 0 });
    const err = await narrow.images.generate({ model: 'img', prompt: 'no' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
  });
});

describe('an upstream body that breaks off after its status', () => {
  it('ends the client\'s answer unfinished and is recorded as the upstream\'s failure, not as a client that left', async () => {
    const res = await request(`${gw.url}/v1/audio/speech`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'cut', input: 'Hello', voice: 'alloy' }) });
    expect(res.statusCode).toBe(200);
    await expect(res.body.arrayBuffer()).rejects.toThrow();
    const counted = async (status: string) => {
      const text = await (await request(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).body.text();
      const line = text.split('\n').find((l) => l.startsWith('inference_requests_total{') && l.includes('route="/v1/audio/speech"') && l.includes(`status="${status}"`) && l.includes('model="cut-tts"'));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    await expect.poll(() => counted('502'), { timeout: 5_000, interval: 50 }).toBe(1);
    expect(await counted('499')).toBe(0);
    // Held against the deployment, as a broken chat stream is: its status shows the failure.
    const providers = (await (await request(`${gw.url}/v1/providers`, { headers: { authorization: `Bearer ${apiKey}` } })).body.json()) as { data: { model: string; error_rate: number }[] };
    expect(providers.data.find((d) => d.model === 'cut-tts')?.error_rate).toBeGreaterThan(0);
  });
});
