import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENV_VARS } from './env.js';
import { envTableMarkdown, replaceEnvTable } from './env-doc.js';

describe('the README environment table', () => {
  it('lists exactly the variables the loader reads (run `tsx scripts/gen-env-table.ts` to refresh)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(replaceEnvTable(readme, envTableMarkdown())).toBe(readme);
  });

  it('has no variable twice', () => {
    const names = ENV_VARS.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
  });
});
