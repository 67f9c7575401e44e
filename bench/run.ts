// `npm run bench`: builds once, then runs each benchmark script in turn (they print their own
// tables). Pass names to run a subset: `npm run bench -- gateway-overhead routing-decision`, and
// options after the names for them: `npm run bench -- concurrent-1000 --workers 2 --mesh`.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { IMAGE_NODE_OPTIONS } from './lib/processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The soak (bench/soak.ts, ten minutes) runs only when named: `npm run bench -- soak`.
const ALL = ['gateway-overhead', 'app-overhead', 'routing-decision', 'full-pipeline', 'concurrent-1000', 'tts-aggregation', 'embedding-batching', 'forecast-mape'];
// Names first, then options passed to every named benchmark: `npm run bench -- concurrent-1000 --workers 2`.
const firstOption = process.argv.slice(2).findIndex((a) => a.startsWith('-'));
const wanted = firstOption < 0 ? process.argv.slice(2) : process.argv.slice(2, 2 + firstOption);
const args = firstOption < 0 ? [] : process.argv.slice(2 + firstOption);
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
  // The load generators hold up to a thousand requests in flight, like the gateway: the same young
  // generation as the Docker image gives InferenceFlow's processes (docs/scaling.md), so their GC
  // takes less of the two cores they share with the process under test.
  execFileSync(process.execPath, [IMAGE_NODE_OPTIONS, '--import', 'tsx', file, ...args], { cwd: ROOT, stdio: 'inherit' });
}
