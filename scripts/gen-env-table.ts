// Regenerates the environment-variable table in README.md from src/config/env.ts (the one list the
// loader reads). `tsx scripts/gen-env-table.ts` rewrites; a test fails when the README is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { envTableMarkdown, replaceEnvTable } from '../src/config/env-doc.js';

const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const text = readFileSync(readme, 'utf8');
const next = replaceEnvTable(text, envTableMarkdown());
if (next !== text) {
  writeFileSync(readme, next);
  console.log('README.md environment table updated');
} else console.log('README.md environment table is current');
