import { describe, expect, it } from 'vitest';
import { escapePart } from '../keys.js';
import { filterGlob } from './types.js';

describe('filterGlob', () => {
  it('ANDs a hash glob with the escaped namespace and model', () => {
    expect(filterGlob({ namespace: 'key:key_abc', model: 'llama3:8b', hash: 'ab*' }, escapePart)).toBe('key%3Akey_abc:llama3%3A8b:ab*');
    expect(filterGlob({ namespace: 'key:key_abc', hash: '*' }, escapePart)).toBe('key%3Akey_abc:*:*');
    expect(filterGlob({ hash: '*' }, escapePart)).toBe('*:*:*');
  });

  it('refuses a raw key pattern together with a scope instead of dropping the scope', () => {
    expect(() => filterGlob({ namespace: 'acme', pattern: '*' }, escapePart)).toThrow(/cannot be combined/);
    expect(() => filterGlob({ model: 'm', pattern: '*' }, escapePart)).toThrow(/cannot be combined/);
    expect(filterGlob({ pattern: 'acme:*' }, escapePart)).toBe('acme:*');
  });
});
