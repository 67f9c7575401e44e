import { describe, expect, it } from 'vitest';
import type { ChatRequest } from '../canonical/chat.js';
import { countPromptTokens } from '../providers/tokens.js';
import { fits, promptUpperBound, type RequestState } from './eligibility.js';
import type { Deployment } from './catalog.js';

const state = (req: ChatRequest) => ({ req, visited: [] }) as unknown as RequestState;
const image = (url: string) => ({ type: 'image_url' as const, image_url: { url } });

describe('promptUpperBound', () => {
  it('is never below the exact count, images included (each counts up to 1,534 tokens)', () => {
    const req: ChatRequest = {
      model: 'm',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Compare these.' }, image('https://example.com/a.png'), image('https://example.com/b.png'), image('https://example.com/c.png')] }],
    };
    expect(promptUpperBound(state(req))).toBeGreaterThanOrEqual(countPromptTokens(req.messages));
  });

  it('so a prompt of images is not waved into a window it does not fit without being counted', () => {
    const req: ChatRequest = { model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'Compare these.' }, image('https://example.com/a.png'), image('https://example.com/b.png'), image('https://example.com/c.png')] }] };
    const small = { contextWindow: 3_000 } as Deployment;
    expect(fits(state(req), small)).toBe(false);
    expect(fits(state({ model: 'm', messages: [{ role: 'user', content: 'Hello' }] }), small)).toBe(true);
  });
});
