// A worker for ../worker-rpc.test.ts: echoes, fails with a coded error, waits, blocks in native code,
// exits, or acts as if a message could not be read.
import { execSync } from 'node:child_process';
import { parentPort } from 'node:worker_threads';
import { serveWorker } from '../worker-rpc.js';

let posted = 0;
serveWorker((m) => {
  switch (m.op) {
    case 'uncloneable':
      return { f: () => 1 };
    case 'echo':
      return { echo: m.value, posted };
    case 'post':
      posted++;
      return undefined;
    case 'fail':
      throw Object.assign(new Error('refused'), { code: '23505', detail: { nested: true } });
    case 'wait':
      return new Promise((resolve) => setTimeout(() => resolve(m.value), Number(m.ms)));
    case 'block':
      // Blocks in native code (a child process waited for synchronously): terminate() cannot stop it.
      execSync(`sleep ${Number(m.seconds)}`);
      return 'unblocked';
    // What the port does with a message it cannot deserialise.
    case 'messageerror':
      parentPort?.emit('messageerror', new Error('unreadable'));
      return 'emitted';
    case 'exit':
      process.exit(3);
  }
  throw new Error(`unknown op ${String(m.op)}`);
});
