// Work that would block the event loop (the embedded database, the semantic cache's vector index)
// runs in a worker thread: the request path posts it a message and awaits the answer, so a 5 ms
// database write or a 100 µs graph insert no longer holds every other request behind it.
// One small request/answer protocol for every such worker: calls carry an id and are delivered in
// the order they were posted (one port, FIFO), `post`s among them; a synchronous handler answers in
// that order, an asynchronous one when it finishes (answers are matched by id).
import { parentPort, Worker, type Transferable, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts the worker module `name` beside the caller's module (`from`: its `import.meta.url`): the
 * built `.js` in dist/, or the `.ts` source through tsx when running from source (tests, `npm run dev`).
 * The worker inherits the process's node flags (Node checks only flags given explicitly, and refuses
 * V8 ones such as `--max-semi-space-size` there). It starts from a one-line script that imports the
 * module, not from the module's file: an inherited `--input-type` (a `node -e` caller) refuses a
 * file as a worker's entry. From source tsx must be registered first (`--import tsx` in a worker's
 * execArgv does not reach its loader on Node 20). Messages wait in its port meanwhile.
 */
export function startModuleWorker(from: string, name: string, options: WorkerOptions = {}): Worker {
  if (!from.endsWith('.ts')) return new Worker(`import(${JSON.stringify(new URL(`./${name}.js`, from).href)})`, { ...options, eval: true });
  // From source: scripts/ts-worker.mjs (not part of the build, nor of the image) registers tsx and
  // imports the module named by its last argument.
  const boot = new URL('../../scripts/ts-worker.mjs', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(boot)})`, { ...options, eval: true, argv: [...(options.argv ?? []), new URL(`./${name}.ts`, from).href] });
}

/** How long a stopped worker may take to end before it counts as wedged, ms. */
const TERMINATE_WAIT_MS = 2_000;
const wedged = new Set<Worker>();

/**
 * Workers told to stop that did not: a thread looping in native code ignores `terminate()`, and
 * Node's `process.exit()` waits for every worker thread to end — for ever, for such a one.
 * exitAfterFlush (cli/exit.ts) kills the process instead while there is one.
 */
export function wedgedWorkers(): number {
  return wedged.size;
}

interface Answer {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: SerializedError;
}

interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** Own enumerable properties (a Postgres error's `code`, `detail`…), which structured clone drops. */
  props: Record<string, unknown>;
}

function serializeError(err: unknown): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err), props: {} };
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(err)) {
    if (v === undefined || typeof v === 'function' || (typeof v === 'object' && v !== null)) continue;
    props[k] = v;
  }
  const out: SerializedError = { name: err.name, message: err.message, props };
  if (err.stack !== undefined) out.stack = err.stack;
  return out;
}

function deserializeError(e: SerializedError): Error {
  const err = new Error(e.message);
  err.name = e.name;
  if (e.stack !== undefined) err.stack = e.stack;
  return Object.assign(err, e.props);
}

/**
 * The calling side. The worker keeps the process alive only while a call is unanswered. If the
 * worker fails or exits, every unanswered call rejects with why, and so does every later one.
 */
export class WorkerClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private failure: Error | undefined;

  constructor(
    readonly worker: Worker,
    private readonly what: string,
  ) {
    worker.unref();
    worker.on('message', (m: Answer) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref();
      if (m.ok) p.resolve(m.result);
      else p.reject(deserializeError(m.error as SerializedError));
    });
    worker.on('error', (err) => this.fail(err instanceof Error ? err : new Error(String(err))));
    // An answer that cannot be deserialised names no call: it would leave one waiting for ever.
    // The worker counts as failed (every call rejects) and is stopped, so its 'exit' reaches
    // whoever falls back on it (the semantic cache rebuilds its index in this thread).
    worker.on('messageerror', (err: Error) => {
      this.fail(new Error(`${what} worker sent a message that could not be read: ${err.message}`));
      void this.terminate();
    });
    worker.on('exit', (code) => this.fail(new Error(`${what} worker exited (code ${code})`)));
  }

  /** Why the worker is gone, once it is. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Sends a request and resolves with the worker's answer (or rejects with its error). */
  call<T>(message: Record<string, unknown>, transfer?: readonly Transferable[]): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        this.worker.postMessage({ ...message, id }, transfer);
      } catch (err) {
        // A value structured clone refuses (a function, a socket): this call fails, the worker lives on.
        this.pending.delete(id);
        if (this.pending.size === 0) this.worker.unref();
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /** Sends a message that gets no answer; it is handled in order with calls. */
  post(message: Record<string, unknown>, transfer?: readonly Transferable[]): void {
    if (this.failure) return;
    this.worker.postMessage({ ...message, id: 0 }, transfer);
  }

  /**
   * Stops the worker; unanswered calls reject. Resolves once it has ended, or after
   * TERMINATE_WAIT_MS if it has not (it is then counted by wedgedWorkers until it does).
   */
  async terminate(): Promise<void> {
    if (!this.failure) this.fail(new Error(`${this.what} worker stopped`));
    const worker = this.worker;
    const ended = worker.terminate().then(
      () => wedged.delete(worker),
      () => wedged.delete(worker),
    );
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        wedged.add(worker);
        resolve();
      }, TERMINATE_WAIT_MS);
      timer.unref();
    });
    await Promise.race([ended, late]);
    clearTimeout(timer);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    // Nothing is waiting for it any more: it must not keep the process alive.
    this.worker.unref();
  }
}

/**
 * The worker side: answers each message with `handle`'s result (awaited) or its error; messages
 * posted without an answer (`id` 0) go the same way, their errors to `onPostError`. Each message is
 * handled as it arrives: a synchronous handler finishes before the next message starts, an
 * asynchronous one may interleave with later messages (a database serialises those itself).
 */
export function serveWorker(handle: (message: Record<string, unknown>) => unknown, onPostError: (err: unknown) => void = () => undefined): void {
  const port = parentPort;
  if (!port) throw new Error('serveWorker must run in a worker thread');
  const answer = (id: number, result: unknown) => {
    if (id === 0) return;
    try {
      port.postMessage({ id, ok: true, result } satisfies Answer);
    } catch (err) {
      // An answer structured clone refuses: the call fails, the worker lives on.
      port.postMessage({ id, ok: false, error: serializeError(err) } satisfies Answer);
    }
  };
  const refuse = (id: number, err: unknown) => {
    if (id !== 0) port.postMessage({ id, ok: false, error: serializeError(err) } satisfies Answer);
    else onPostError(err);
  };
  // A request that cannot be deserialised names no call to refuse: its caller would wait for ever.
  // The worker ends instead, so the caller sees it exit and fails every call it has waiting.
  port.on('messageerror', (err: Error) => {
    onPostError(err);
    process.exit(70);
  });
  port.on('message', (m: Record<string, unknown> & { id: number }) => {
    let result: unknown;
    try {
      result = handle(m);
    } catch (err) {
      refuse(m.id, err);
      return;
    }
    if (result instanceof Promise) result.then((r: unknown) => answer(m.id, r), (err: unknown) => refuse(m.id, err));
    else answer(m.id, result);
  });
}
