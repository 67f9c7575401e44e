// How a command exits: after its log's buffered lines are written, and never waiting for ever on a
// worker thread that does not stop. The CLI's concern (serve, mesh, the cluster primary), kept out of
// the logger so telemetry does not depend on the gateway's worker threads.
import { symbols as pinoSymbols } from 'pino';
import { wedgedWorkers } from '../gateway/worker-rpc.js';

/**
 * process.exit — unless a worker thread told to stop is stuck in native code (wedgedWorkers), which
 * process.exit would wait for forever: then the process kills itself, saying so on stderr.
 */
function exitProcess(code: number): void {
  if (wedgedWorkers() === 0) process.exit(code);
  process.stderr.write(`inferenceflow: ${wedgedWorkers()} worker thread(s) stuck in native code do not stop; exiting with SIGKILL\n`);
  process.kill(process.pid, 'SIGKILL');
}

/** Turns the synchronous flush of a pino logger's destination into a no-op (see exitAfterFlush). */
function noSyncFlush(log: object): void {
  const stream = (log as Record<symbol, unknown>)[pinoSymbols.streamSym] as { flushSync?: () => void } | undefined;
  if (stream && typeof stream.flushSync === 'function') stream.flushSync = () => undefined;
}

/** How long an exit waits for buffered lines to reach a reader that is slow but still there, ms. */
const EXIT_FLUSH_WAIT_MS = 2_000;

/**
 * Exits once the log's buffered lines are written — asynchronously. pino flushes a buffered
 * destination synchronously on exit, and sonic-boom 4's synchronous flush retries a failed write
 * forever, every 100 ms, unless the failure is EAGAIN: with stdout's reader gone (EPIPE — a log
 * shipper that died, `| head`, a killed cluster primary) a process told to stop never exited. An
 * asynchronous write reports EPIPE instead, and pino then stops writing to that stream, so the exit
 * that follows does not loop. `flush` must be the logger's (pino's `flush(cb)`).
 */
export function exitAfterFlush(log: { flush(cb?: (err?: Error) => void): void }, code: number, exit: (code: number) => void = exitProcess): void {
  let done = false;
  const go = () => {
    if (done) return;
    done = true;
    exit(code);
  };
  setTimeout(go, EXIT_FLUSH_WAIT_MS).unref();
  try {
    log.flush((err) => {
      // pino stops writing after EPIPE itself; after any other failure (a full disk) its exit hook's
      // synchronous flush would retry for ever: there is nothing more to be written.
      if (err) noSyncFlush(log);
      go();
    });
  } catch {
    go();
  }
}
