// Renders the README's environment-variable table from ENV_VARS so the two cannot drift.
import { ENV_VARS } from './env.js';

export const ENV_TABLE_START = '<!-- env-table:start -->';
export const ENV_TABLE_END = '<!-- env-table:end -->';

export function envTableMarkdown(): string {
  const rows = [...ENV_VARS]
    .map((v) => `| \`${v.name}\` | ${v.default !== undefined ? `\`${v.default}\`` : '—'} | ${v.path ? `\`${v.path}\`` : '—'} | ${v.description} |`)
    .join('\n');
  return `| variable | default | config key | what it does |\n|---|---|---|---|\n${rows}`;
}

export function replaceEnvTable(readme: string, table: string): string {
  const start = readme.indexOf(ENV_TABLE_START);
  const end = readme.indexOf(ENV_TABLE_END);
  if (start < 0 || end < start) throw new Error('README.md has no env-table markers');
  return `${readme.slice(0, start + ENV_TABLE_START.length)}\n${table}\n${readme.slice(end)}`;
}
