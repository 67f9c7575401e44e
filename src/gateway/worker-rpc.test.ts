import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { startModuleWorker, wedgedWorkers, WorkerClient } from './worker-rpc.js';

const start = () => new WorkerClient(startModuleWorker(import.meta.url, '__fixtures__/worker-rpc-echo'), 'fixture');

describe('WorkerClient over a module worker', () => {
  it('answers calls, keeps posts in order with them, and carries an error with its code', async () => {
    const w = start();
    try {
      w.post({ op: 'post' });
      w.post({ op: 'post' });
      expect(await w.call({ op: 'echo', value: [1, 'two'] })).toEqual({ echo: [1, 'two'], posted: 2 });
      const err = await w.call({ op: 'fail' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).toMatchObject({ message: 'refused', code: '23505' });
      // Object-valued properties are not carried (they may not clone); the code is what callers read.
      expect((err as { detail?: unknown }).detail).toBeUndefined();
    } finally {
      await w.terminate();
    }
  });

  it('rejects a call whose message cannot be cloned, and goes on answering others', async () => {
    const w = start();
    try {
      await expect(w.call({ op: 'echo', value: () => 1 })).rejects.toThrow(/could not be cloned/);
      // Nor an answer: that call fails, the worker goes on.
      await expect(w.call({ op: 'uncloneable' })).rejects.toThrow(/could not be cloned/);
      expect(await w.call({ op: 'echo', value: 'after' })).toEqual({ echo: 'after', posted: 0 });
      expect(w.failed).toBeUndefined();
    } finally {
      await w.terminate();
    }
  });

  it('answers asynchronous handlers as they finish, not in the order asked', async () => {
    const w = start();
    try {
      const order: string[] = [];
      await Promise.all([
        w.call({ op: 'wait', ms: 60, value: 'slow' }).then((v) => order.push(String(v))),
        w.call({ op: 'wait', ms: 1, value: 'fast' }).then((v) => order.push(String(v))),
      ]);
      expect(order).toEqual(['fast', 'slow']);
    } finally {
      await w.terminate();
    }
  });

  it('rejects unanswered and later calls once the worker is gone', async () => {
    const w = start();
    const pending = w.call({ op: 'wait', ms: 10_000, value: 'never' });
    const exited = w.call({ op: 'exit' });
    await expect(pending).rejects.toThrow(/fixture worker exited \(code 3\)/);
    await expect(exited).rejects.toThrow(/exited/);
    await expect(w.call({ op: 'echo', value: 1 })).rejects.toThrow(/exited/);
    expect(w.failed?.message).toMatch(/exited/);
    await w.terminate();
  });
});

describe('a message that cannot be read', () => {
  it('from the worker: fails the client, rejects what waits and what comes, and stops the worker', async () => {
    const w = start();
    const pending = w.call({ op: 'wait', ms: 10_000, value: 'never' });
    const exited = new Promise((resolve) => w.worker.once('exit', resolve));
    w.worker.emit('messageerror', new Error('bad bytes'));
    await expect(pending).rejects.toThrow(/fixture worker sent a message that could not be read: bad bytes/);
    await expect(w.call({ op: 'echo', value: 1 })).rejects.toThrow(/could not be read/);
    await exited;
    await w.terminate();
  });

  it('in the worker: it exits, so its caller fails every call instead of waiting for one that is lost', async () => {
    const w = start();
    const pending = w.call({ op: 'wait', ms: 10_000, value: 'never' });
    await w.call({ op: 'messageerror' }).catch(() => undefined);
    await expect(pending).rejects.toThrow(/fixture worker exited \(code 70\)/);
    await w.terminate();
  });
});

describe('a worker stuck in native code', () => {
  it('is counted as wedged when terminate() cannot stop it, until it ends', async () => {
    const w = start();
    // Up and serving first (loading its modules can take longer than any fixed wait on a busy
    // machine, and a worker still loading is stopped at once), then inside the blocking call.
    await w.call({ op: 'echo', value: 'ready' });
    void w.call({ op: 'block', seconds: 3 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const started = performance.now();
    await w.terminate();
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(wedgedWorkers()).toBe(1);
    await expect.poll(() => wedgedWorkers(), { timeout: 5_000, interval: 50 }).toBe(0);
  }, 15_000);

  it('makes exitAfterFlush kill the process rather than wait for it for ever', () => {
    const rpc = JSON.stringify(new URL('./worker-rpc.ts', import.meta.url).href);
    const exit = JSON.stringify(new URL('../cli/exit.ts', import.meta.url).href);
    const script = `import { register } from 'tsx/esm/api'; register();
      const { startModuleWorker, WorkerClient } = await import(${rpc});
      const { exitAfterFlush } = await import(${exit});
      const w = new WorkerClient(startModuleWorker(${rpc}, '__fixtures__/worker-rpc-echo'), 'fixture');
      await w.call({ op: 'echo', value: 'ready' });
      void w.call({ op: 'block', seconds: 8 }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 500));
      await w.terminate();
      exitAfterFlush({ flush: (cb) => cb() }, 0);`;
    const started = performance.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8', timeout: 20_000 });
    // Killed once terminate() gave up (2 s), not when the blocking call ended (8 s after it began).
    expect(performance.now() - started).toBeLessThan(8_000);
    expect(r.signal).toBe('SIGKILL');
    expect(r.stderr).toContain('stuck in native code do not stop; exiting with SIGKILL');
  }, 30_000);
});

describe('startModuleWorker', () => {
  // Node refuses V8 flags in a worker's explicit execArgv; a gateway started with them (the Docker
  // image's young-generation size, --trace-gc) or from `node --input-type=module -e` must still start
  // its workers. Run in a child process, from the module's source, with those flags.
  it('starts a worker under V8 flags and an inherited --input-type', () => {
    const rpc = JSON.stringify(new URL('./worker-rpc.ts', import.meta.url).href);
    const script = `import { register } from 'tsx/esm/api'; register();
      const { startModuleWorker, WorkerClient } = await import(${rpc});
      const w = new WorkerClient(startModuleWorker(${rpc}, '__fixtures__/worker-rpc-echo'), 'fixture');
      console.log(JSON.stringify(await w.call({ op: 'echo', value: 'ok' })));
      await w.terminate();`;
    const r = spawnSync(process.execPath, ['--max-semi-space-size=16', '--trace-gc', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.stdout).toContain('{"echo":"ok","posted":0}');
  });
});
