import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { imageSize, imageTokens, LOW_DETAIL_TOKENS, tokensForSize, UNKNOWN_IMAGE_TOKENS } from './image-tokens.js';
import { countMessageTokens, countPromptTokens } from './tokens.js';

// Real files written by ImageMagick and cwebp (sizes as `file` reports them).
const fixture = (name: string) => readFileSync(new URL(`./__fixtures__/images/${name}`, import.meta.url));
const dataUrl = (name: string, mime: string) => `data:${mime};base64,${fixture(name).toString('base64')}`;

describe('imageSize', () => {
  it.each([
    ['wide.png', 1000, 1000],
    ['progressive.jpg', 2000, 1500],
    ['baseline-comment.jpg', 640, 480], // its frame header follows a 30 KB comment
    ['small.gif', 48, 60],
    ['lossy.webp', 300, 200],
    ['lossless.webp', 1000, 1000],
    ['alpha.webp', 302, 202], // extended (VP8X)
  ])('reads %s as %i × %i', (name, width, height) => {
    expect(imageSize(fixture(name))).toEqual({ width, height });
  });

  it('gives up on what is not an image header', () => {
    expect(imageSize(Buffer.from('hello world, not an image at all'))).toBeUndefined();
    expect(imageSize(fixture('progressive.jpg').subarray(0, 40))).toBeUndefined();
    expect(imageSize(Buffer.alloc(0))).toBeUndefined();
  });
});

describe('image tokens', () => {
  it("is Anthropic's pixels / 750 after its downscaling", () => {
    expect(tokensForSize({ width: 1000, height: 1000 })).toBe(1334);
    expect(tokensForSize({ width: 200, height: 200 })).toBe(54);
    // 2000 × 1500 scales to 1568 × 1176 (long edge), then to about 1.15 MP.
    expect(tokensForSize({ width: 2000, height: 1500 })).toBe(UNKNOWN_IMAGE_TOKENS);
    expect(tokensForSize({ width: 8000, height: 100 })).toBe(Math.ceil((1568 * 19.6) / 750));
  });

  it('measures inline images from their headers; low detail is flat; a URL counts the most', () => {
    expect(imageTokens(dataUrl('wide.png', 'image/png'))).toBe(1334);
    expect(imageTokens(dataUrl('small.gif', 'image/gif'))).toBe(4);
    expect(imageTokens(dataUrl('wide.png', 'image/png'), 'low')).toBe(LOW_DETAIL_TOKENS);
    expect(imageTokens('https://example.com/cat.png')).toBe(UNKNOWN_IMAGE_TOKENS);
    expect(imageTokens('data:image/png;base64,bm90IGFuIGltYWdl')).toBe(UNKNOWN_IMAGE_TOKENS);
  });

  it('counts in a prompt: an image is not free', () => {
    const text = countPromptTokens([{ role: 'user', content: 'Describe this' }]);
    const withImage = countPromptTokens([
      { role: 'user', content: [{ type: 'text', text: 'Describe this' }, { type: 'image_url', image_url: { url: dataUrl('wide.png', 'image/png') } }] },
    ]);
    expect(withImage - text).toBe(1334);
    expect(countMessageTokens({ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.jpg', detail: 'low' } }] })).toBe(3 + LOW_DETAIL_TOKENS);
  });
});
