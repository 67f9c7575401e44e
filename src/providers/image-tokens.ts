// An image's share of a prompt's tokens, for budgets, context-window checks and
// `/v1/messages/count_tokens`. Providers bill an image by its pixels, so an inline image (a base64
// data: URL) is measured from its header — PNG, JPEG, GIF and WebP — without decoding it:
// - Anthropic: about width × height / 750 tokens, after scaling the image down to at most 1568 px
//   on its long edge and about 1.15 megapixels (its vision guide) — the estimate used here;
// - OpenAI `detail: low`: a flat 85 tokens.
// An image by URL, or one whose header cannot be read, counts as UNKNOWN_IMAGE_TOKENS: the most
// Anthropic's rule gives any image, so a limit never sees an image as free.
import { parseDataUrl } from './data-url.js';

/** Long edge and area Anthropic scales an image down to before it is tokenized. */
const MAX_EDGE = 1568;
const MAX_PIXELS = 1_150_000;
const PIXELS_PER_TOKEN = 750;
/** OpenAI's flat price of a `detail: low` image. */
export const LOW_DETAIL_TOKENS = 85;
/** An image whose size cannot be read: the most the estimate gives any image. */
export const UNKNOWN_IMAGE_TOKENS = Math.ceil(MAX_PIXELS / PIXELS_PER_TOKEN);
/** Base64 characters decoded first: PNG, GIF and WebP sizes are in an image's first 30 bytes. */
const HEAD_BASE64_CHARS = 40;
/** …and for a JPEG, whose frame header follows its EXIF block (≤ 64 KiB). */
const JPEG_HEADER_BASE64_CHARS = 96 * 1024;

export interface ImageSize {
  width: number;
  height: number;
}

/** Tokens an image of this size costs (Anthropic's estimate, after its downscaling). */
export function tokensForSize({ width, height }: ImageSize): number {
  let w = width;
  let h = height;
  const edge = Math.max(w, h);
  if (edge > MAX_EDGE) {
    w = (w * MAX_EDGE) / edge;
    h = (h * MAX_EDGE) / edge;
  }
  if (w * h > MAX_PIXELS) {
    const s = Math.sqrt(MAX_PIXELS / (w * h));
    w *= s;
    h *= s;
  }
  return Math.max(1, Math.ceil((w * h) / PIXELS_PER_TOKEN));
}

/** Tokens of one image content part (`image_url` in the canonical model). */
export function imageTokens(url: string, detail?: string): number {
  if (detail === 'low') return LOW_DETAIL_TOKENS;
  const inline = parseDataUrl(url);
  if (!inline) return UNKNOWN_IMAGE_TOKENS;
  let head = Buffer.from(inline.data.slice(0, HEAD_BASE64_CHARS), 'base64');
  if (head[0] === 0xff && head[1] === 0xd8) head = Buffer.from(inline.data.slice(0, JPEG_HEADER_BASE64_CHARS), 'base64');
  const size = imageSize(head);
  return size ? tokensForSize(size) : UNKNOWN_IMAGE_TOKENS;
}

/** Width and height from a PNG, JPEG, GIF or WebP header; undefined for anything else. */
export function imageSize(b: Buffer): ImageSize | undefined {
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47 && b.toString('latin1', 12, 16) === 'IHDR') {
    return valid(b.readUInt32BE(16), b.readUInt32BE(20));
  }
  if (b.length >= 10 && b.toString('latin1', 0, 4) === 'GIF8') return valid(b.readUInt16LE(6), b.readUInt16LE(8));
  if (b.length >= 30 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return webpSize(b);
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) return jpegSize(b);
  return undefined;
}

function valid(width: number, height: number): ImageSize | undefined {
  return width > 0 && height > 0 ? { width, height } : undefined;
}

function webpSize(b: Buffer): ImageSize | undefined {
  const chunk = b.toString('latin1', 12, 16);
  // Lossy: the frame's 14-bit sizes after the start code 9d 01 2a.
  if (chunk === 'VP8 ' && b[23] === 0x9d && b[24] === 0x01 && b[25] === 0x2a) return valid(b.readUInt16LE(26) & 0x3fff, b.readUInt16LE(28) & 0x3fff);
  // Lossless: 14-bit width - 1 and height - 1 packed after the signature byte 0x2f.
  if (chunk === 'VP8L' && b[20] === 0x2f) {
    const bits = b.readUInt32LE(21);
    return valid((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  // Extended: 24-bit canvas width - 1 and height - 1.
  if (chunk === 'VP8X') return valid(b.readUIntLE(24, 3) + 1, b.readUIntLE(27, 3) + 1);
  return undefined;
}

function jpegSize(b: Buffer): ImageSize | undefined {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return undefined;
    const marker = b[i + 1] as number;
    // Fill bytes, and markers that stand alone (no length): TEM, RSTn.
    if (marker === 0xff) {
      i++;
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    const length = b.readUInt16BE(i + 2);
    // Start of frame (baseline, progressive, …), not DHT (c4), JPG (c8) or DAC (cc).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return valid(b.readUInt16BE(i + 7), b.readUInt16BE(i + 5));
    }
    if (length < 2) return undefined;
    i += 2 + length;
  }
  return undefined;
}
