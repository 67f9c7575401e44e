// `npm run bench`: builds once, then runs each benchmark script in turn (they print their own
// tables). Pass names to run a subset: `npm run bench -- gateway-overhead routing-decision`.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The soak (bench/soak.ts, ten minutes) runs only when named: `npm run bench -- soak`.
const ALL = ['gateway-overhead', 'routing-decision', 'full-pipeline', 'concurrent-1000', 'tts-aggregation', 'embedding-batching'];
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const list = wanted.length ? wanted : ALL;

execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
for (const name of list) {
  const file = `bench/${name}.ts`;
  if (!existsSync(`${ROOT}/${file}`)) {
    console.error(`no benchmark ${file}`);
    process.exitCode = 1;
    continue;
  }
  console.log(`\n=== ${name}`);
  execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, stdio: 'inherit' });
}
