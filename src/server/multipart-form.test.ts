import { describe, expect, it } from 'vitest';
import { MultipartError, MultipartForm } from './multipart-form.js';

const BOUNDARY = '----formdata-test-7f3a';
const TYPE = `multipart/form-data; boundary=${BOUNDARY}`;
// Bytes a text decoder would mangle: NUL, invalid UTF-8, CR LF and something that looks like a delimiter's start.
const AUDIO = Buffer.from([0x52, 0x49, 0x46, 0x46, 0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x2d, 0x2d, 0x80, 0x57, 0x41, 0x56, 0x45]);

function form(fields: [string, string | { filename: string; type: string; data: Buffer }][]): Buffer {
  const pieces: Buffer[] = [];
  for (const [name, v] of fields) {
    if (typeof v === 'string') pieces.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${v}\r\n`));
    else pieces.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"; filename="${v.filename}"\r\nContent-Type: ${v.type}\r\n\r\n`), v.data, Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(pieces);
}

const parse = (body: Buffer) => MultipartForm.parse(body, TYPE) as MultipartForm;

describe('MultipartForm', () => {
  it('replaces the model field and keeps every other byte, the file byte for byte', () => {
    const body = form([['file', { filename: 'a.wav', type: 'audio/wav', data: AUDIO }], ['model', 'whisper'], ['language', 'en']]);
    const f = parse(body);
    expect(f.field('model')).toBe('whisper');
    const out = f.withField('model', 'whisper-large-v3');
    expect(out).toEqual(form([['file', { filename: 'a.wav', type: 'audio/wav', data: AUDIO }], ['model', 'whisper-large-v3'], ['language', 'en']]));
    const again = parse(out);
    expect(again.field('model')).toBe('whisper-large-v3');
    expect(again.field('language')).toBe('en');
    expect(again.parts.find((p) => p.name === 'file')?.data.equals(AUDIO)).toBe(true);
  });

  it('adds a model field before the closing delimiter when the form has none', () => {
    const body = form([['image', { filename: 'x.png', type: 'image/png', data: AUDIO }], ['prompt', 'a cat']]);
    const f = parse(body);
    expect(f.field('model')).toBeUndefined();
    const out = f.withField('model', 'dall-e-2');
    expect(out).toEqual(form([['image', { filename: 'x.png', type: 'image/png', data: AUDIO }], ['prompt', 'a cat'], ['model', 'dall-e-2']]));
    expect(parse(out).field('model')).toBe('dall-e-2');
  });

  it('works on a body that is a view into a larger buffer (as a parser may hand it over)', () => {
    const body = form([['model', 'm'], ['file', { filename: 'a.mp3', type: 'audio/mpeg', data: AUDIO }]]);
    const view = Buffer.concat([Buffer.from('xxxx'), body]).subarray(4);
    expect(parse(view).withField('model', 'upstream-m')).toEqual(form([['model', 'upstream-m'], ['file', { filename: 'a.mp3', type: 'audio/mpeg', data: AUDIO }]]));
  });

  it('leaves a file part named like the field alone', () => {
    const body = form([['model', { filename: 'model.bin', type: 'application/octet-stream', data: AUDIO }]]);
    const out = parse(body).withField('model', 'm2');
    expect(parse(out).parts.filter((p) => p.name === 'model').map((p) => p.filename ?? p.data.toString())).toEqual(['model.bin', 'm2']);
  });

  it('refuses a value that would break the form, and is not a form without a boundary', () => {
    const f = parse(form([['model', 'm']]));
    expect(() => f.withField('model', 'a\r\nb')).toThrow(MultipartError);
    expect(() => f.withField('model', `x--${BOUNDARY}`)).toThrow(MultipartError);
    expect(MultipartForm.parse(Buffer.from('{}'), 'application/json')).toBeUndefined();
    expect(() => MultipartForm.parse(Buffer.from('garbage'), TYPE)).toThrow(MultipartError);
  });
});
