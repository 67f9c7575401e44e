import { describe, expect, it } from 'vitest';
import { StopSequenceScanner } from './stop-sequences.js';

/** Feeds pieces through a scanner and returns everything it let out. */
function run(stops: string[], pieces: string[]): { text: string; stopped: boolean } {
  const scanner = new StopSequenceScanner(stops);
  let text = '';
  for (const piece of pieces) text += scanner.push(piece);
  text += scanner.flush();
  return { text, stopped: scanner.stopped };
}

describe('StopSequenceScanner', () => {
  it('keeps the text before a stop that sits inside one piece, including a space before it', () => {
    expect(run(['Lily'], [', there was a', ' girl named Lily.'])).toEqual({ text: ', there was a girl named ', stopped: true });
  });

  it('finds a stop split across pieces and never lets its start out', () => {
    const scanner = new StopSequenceScanner(['\nUser:']);
    expect(scanner.push('Hello.\nUs')).toBe('Hello.');
    expect(scanner.push('er: more')).toBe('');
    expect(scanner.stopped).toBe(true);
    expect(scanner.flush()).toBe('');
  });

  it('releases held text when the next piece shows it was not a stop', () => {
    const scanner = new StopSequenceScanner(['END']);
    expect(scanner.push('the EN')).toBe('the ');
    expect(scanner.push('D')).toBe('');
    expect(scanner.stopped).toBe(true);
    expect(run(['END'], ['the EN', 'emy'])).toEqual({ text: 'the ENemy', stopped: false });
    expect(run(['END'], ['trailing E'])).toEqual({ text: 'trailing E', stopped: false });
  });

  it('stops at the earliest of several stops and ignores empty ones', () => {
    expect(run(['b', 'cd', ''], ['a', 'cdb'])).toEqual({ text: 'a', stopped: true });
    expect(run([], ['all ', 'of it'])).toEqual({ text: 'all of it', stopped: false });
  });
});
