import { describe, expect, it } from 'vitest';
import type { ChatRequest } from '../canonical/chat.js';
import type { RequestContext } from './context.js';
import { composeStages, type ChatHandler, type ChatStage } from './pipeline.js';

const ctx = {} as RequestContext;
const req = { model: 'm', messages: [] } as ChatRequest;

describe('composeStages', () => {
  it('turns a stage that throws, or a terminal that throws, into a rejection the outer stages can chain on', async () => {
    const seen: string[] = [];
    const outer: ChatStage = (c, r, next) => next(c, r).catch((err: Error) => (seen.push(`outer saw ${err.message}`), Promise.reject(err)));
    const throwing: ChatStage = () => {
      throw new Error('stage');
    };
    const handler = composeStages([outer, throwing], () => Promise.reject(new Error('unreached')));
    let result: Promise<unknown> | undefined;
    expect(() => (result = handler(ctx, req))).not.toThrow();
    await expect(result).rejects.toThrow('stage');
    expect(seen).toEqual(['outer saw stage']);

    const throwingTerminal: ChatHandler = () => {
      throw new Error('terminal');
    };
    await expect(composeStages([outer], throwingTerminal)(ctx, req)).rejects.toThrow('terminal');
    expect(seen).toEqual(['outer saw stage', 'outer saw terminal']);
  });
});
