import { describe, expect, it } from 'vitest';
import { MultipartError, multipartBoundary, parseMultipart } from './multipart.js';

const CRLF = '\r\n';

function body(boundary: string, parts: { headers: string[]; data: string | Buffer }[]): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}${CRLF}${p.headers.join(CRLF)}${CRLF}${CRLF}`));
    chunks.push(Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data));
    chunks.push(Buffer.from(CRLF));
  }
  chunks.push(Buffer.from(`--${boundary}--${CRLF}`));
  return Buffer.concat(chunks);
}

describe('multipart/form-data reader', () => {
  it('reads fields and a file with its name and type, bytes intact', () => {
    const jsonl = '{"custom_id":"a"}\r\n{"custom_id":"b"}\n';
    const b = body('XyZ', [
      { headers: ['Content-Disposition: form-data; name="purpose"'], data: 'batch' },
      { headers: ['Content-Disposition: form-data; name="file"; filename="in put.jsonl"', 'Content-Type: application/jsonl'], data: jsonl },
    ]);
    const parts = parseMultipart(b, 'XyZ');
    expect(parts.map((p) => p.name)).toEqual(['purpose', 'file']);
    expect(parts[0]?.data.toString()).toBe('batch');
    expect(parts[1]).toMatchObject({ filename: 'in put.jsonl', contentType: 'application/jsonl' });
    expect(parts[1]?.data.toString()).toBe(jsonl);
  });

  it('keeps binary data and boundary-like text inside a part', () => {
    const data = Buffer.concat([Buffer.from([0, 255, 13, 10]), Buffer.from('x--XyZ is not a boundary here (no CRLF before it)')]);
    const parts = parseMultipart(body('XyZ', [{ headers: ['Content-Disposition: form-data; name="file"; filename="x"'], data }]), 'XyZ');
    expect(parts[0]?.data.equals(data)).toBe(true);
  });

  it('decodes RFC 5987 file names and quoted escapes', () => {
    const parts = parseMultipart(
      body('b', [
        { headers: ["Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''r%C3%A9sum%C3%A9.jsonl"], data: 'x' },
        { headers: ['Content-Disposition: form-data; name="f2"; filename="a\\"b.jsonl"'], data: 'y' },
      ]),
      'b',
    );
    expect(parts.map((p) => p.filename)).toEqual(['résumé.jsonl', 'a"b.jsonl']);
  });

  it('finds the boundary in the content type, quoted or not', () => {
    expect(multipartBoundary('multipart/form-data; boundary=----abc')).toBe('----abc');
    expect(multipartBoundary('multipart/form-data; charset=utf-8; boundary="q r"')).toBe('q r');
    expect(multipartBoundary('application/json')).toBeUndefined();
  });

  it('rejects truncated or malformed bodies', () => {
    const full = body('b', [{ headers: ['Content-Disposition: form-data; name="file"'], data: 'abc' }]);
    expect(() => parseMultipart(full.subarray(0, full.length - 10), 'b')).toThrow(MultipartError);
    expect(() => parseMultipart(Buffer.from('no boundary'), 'b')).toThrow(MultipartError);
    expect(() => parseMultipart(body('b', [{ headers: ['Content-Type: text/plain'], data: 'x' }]), 'b')).toThrow(/form-data name/);
  });
});
