import { describe, expect, it } from 'vitest';
import { escapePart } from '../keys.js';
import { filterGlob } from './types.js';

describe('filterGlob', () => {
  it('ANDs a hash glob with the escaped namespace and model', () => {
    expect(filterGlob({ namespace: 'key:key_abc', model: 'llama3:8b', pattern: 'ab*' }, escapePart)).toBe('key%3Akey_abc:llama3%3A8b:ab*');
    expect(filterGlob({ namespace: 'key:key_abc', pattern: '*' }, escapePart)).toBe('key%3Akey_abc:*:*');
    expect(filterGlob({ pattern: '*' }, escapePart)).toBe('*:*:*');
  });
});
