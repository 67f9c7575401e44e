// The defaults docs/tenancy.md states for its configuration keys are the schema's.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildConfig } from './load.js';

/** Splits a table cell at its top-level commas (not inside backticks, brackets or braces). */
function cells(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let tick = false;
  let cur = '';
  for (const ch of text) {
    if (ch === '`') tick = !tick;
    else if (!tick && (ch === '[' || ch === '{')) depth++;
    else if (!tick && (ch === ']' || ch === '}')) depth--;
    if (ch === ',' && depth === 0 && !tick) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

function shown(v: unknown): string {
  if (v === undefined) return '–';
  if (typeof v === 'object') return JSON.stringify(v).replace(/,/g, ', ');
  return String(v);
}

describe('docs/tenancy.md configuration keys', () => {
  it('states the defaults the schema has', () => {
    const doc = readFileSync(new URL('../../docs/tenancy.md', import.meta.url), 'utf8');
    const table = doc.slice(doc.indexOf('## Configuration keys added'));
    // auth.jwt is optional: its defaults are those of a configured one.
    const config = buildConfig({ auth: { jwt: { secret: 'x'.repeat(32) } } }, {}).config as unknown as Record<string, unknown>;
    const get = (path: string) => path.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], config);
    const checked: string[] = [];
    for (const line of table.split('\n')) {
      const m = /^\| (`[a-z_]+\.[^|]*?) \| ([^|]*) \|/.exec(line);
      if (!m) continue;
      const keys = [...(m[1] as string).matchAll(/`([^`]+)`/g)].map((k) => k[1] as string);
      const defaults = cells(m[2] as string);
      if (keys.length !== defaults.length || (m[1] as string).includes('/')) continue;
      const parent = (keys[0] as string).split('.').slice(0, -1).join('.');
      keys.forEach((key, i) => {
        if (key.includes('*') || key.includes('[')) return;
        const path = i === 0 ? key : `${parent}${key}`;
        expect(`${path} = ${shown(get(path))}`).toBe(`${path} = ${(defaults[i] as string).replace(/^`|`$/g, '')}`);
        checked.push(path);
      });
    }
    expect(checked).toContain('ledger.flush_interval_ms');
    expect(checked.length).toBeGreaterThan(20);
  });
});
