// A multipart/form-data body forwarded upstream with one field's value replaced (the `model` of an
// audio or image request, which becomes the deployment's upstream name). Everything else — the
// boundary, every part's headers, the files' bytes — is copied as it came: only the field's value is
// spliced in, or, when the form has no such field, one part is added before the closing delimiter.
import { MultipartError, multipartBoundary, parseMultipart, type MultipartPart } from '../batching/jobs/multipart.js';

export { MultipartError };

export class MultipartForm {
  private constructor(
    /** The body as it came. */
    readonly body: Buffer,
    readonly boundary: string,
    readonly parts: readonly MultipartPart[],
  ) {}

  /** The form in `body`, or undefined when `contentType` is not multipart/form-data with a boundary; throws MultipartError when it cannot be read. */
  static parse(body: Buffer, contentType: string | undefined): MultipartForm | undefined {
    const boundary = multipartBoundary(contentType);
    if (!boundary) return undefined;
    return new MultipartForm(body, boundary, parseMultipart(body, boundary));
  }

  /** The first value of the text field `name` (a part without a filename), as UTF-8. */
  field(name: string): string | undefined {
    const part = this.parts.find((p) => p.name === name && p.filename === undefined);
    return part?.data.toString('utf8');
  }

  /**
   * The body with every text field `name` holding `value` instead, or, when there is none, with a
   * part `name` added after the others. The rest is byte for byte the body that came.
   */
  withField(name: string, value: string): Buffer {
    if (/[\r\n]/.test(value) || value.includes(`--${this.boundary}`)) throw new MultipartError(`the value of the field "${name}" cannot be put in this form`);
    const replacement = Buffer.from(value, 'utf8');
    const pieces: Buffer[] = [];
    let at = 0;
    let replaced = false;
    for (const p of this.parts) {
      if (p.name !== name || p.filename !== undefined) continue;
      const start = this.offsetOf(p.data);
      pieces.push(this.body.subarray(at, start), replacement);
      at = start + p.data.length;
      replaced = true;
    }
    if (!replaced) {
      // Before the closing `--boundary--`: right after the last part's CRLF, or where the empty form's delimiter starts.
      const last = this.parts.at(-1);
      const close = last ? this.offsetOf(last.data) + last.data.length + 2 : this.body.indexOf(`--${this.boundary}`);
      pieces.push(this.body.subarray(0, close), Buffer.from(`--${this.boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n`), replacement, Buffer.from('\r\n'));
      at = close;
    }
    pieces.push(this.body.subarray(at));
    return Buffer.concat(pieces);
  }

  /** Where a part's data (a view of the body) starts in the body. */
  private offsetOf(data: Buffer): number {
    return data.byteOffset - this.body.byteOffset;
  }
}
