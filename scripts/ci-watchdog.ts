// Runs a command for CI, passing its output through, and stops it if it stalls.
//
//   tsx scripts/ci-watchdog.ts -- npm test
//
// "Stalled" means nothing on the command's stdout for CI_STALL_SECONDS (default 300; vitest prints
// a line per finished test file, and our slowest file takes about one minute). Then the watchdog prints what
// every process of the command is doing (ps with each one's kernel wait channel), kills the
// command's process group and runs it again, at most CI_STALL_RETRIES times (default 1). A second
// stall exits 124. A command that exits on its own, failing or not, is never run again: only a
// stall is retried, so a failing test stays a failure. Why this exists: docs/decisions.md.
import { execFileSync, spawn } from 'node:child_process';
import { constants } from 'node:os';

const stallMs = positive('CI_STALL_SECONDS', 300) * 1000;
const retries = Math.floor(positive('CI_STALL_RETRIES', 1, true));
const killGraceMs = 5000;

function positive(name: string, fallback: number, zeroOk = false): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !zeroOk)) {
    console.error(`ci-watchdog: ${name} must be a ${zeroOk ? 'non-negative' : 'positive'} number, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const sep = process.argv.indexOf('--');
const [cmd, ...args] = sep >= 0 ? process.argv.slice(sep + 1) : process.argv.slice(2);
if (cmd === undefined) {
  console.error('usage: tsx scripts/ci-watchdog.ts -- <command> [args...]');
  process.exit(2);
}

/** What each process in the group is doing: state, kernel wait channel, age, CPU, command line. */
function describeGroup(pgid: number): string {
  try {
    const out = execFileSync('ps', ['-eo', 'pid,ppid,pgid,stat,wchan:24,etime,pcpu,rss,args', '--forest'], {
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
    });
    const lines = out.split('\n');
    const rows = lines.slice(1).filter((l) => l.trim().split(/\s+/)[2] === String(pgid));
    return [lines[0] ?? '', ...rows].map((l) => l.slice(0, 400)).join('\n');
  } catch (err) {
    return `(ps failed: ${(err as Error).message})`;
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is gone already.
  }
}

function runOnce(attempt: number): Promise<{ code: number; stalled: boolean }> {
  return new Promise((resolve) => {
    // Its own process group, so a stall kills vitest, its workers and whatever they started.
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const pgid = child.pid!;
    let last = Date.now();
    let stalled = false;
    child.stdout.on('data', (chunk: Buffer) => {
      last = Date.now();
      process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    const forward = (signal: NodeJS.Signals) => () => killGroup(pgid, signal);
    const onTerm = forward('SIGTERM');
    const onInt = forward('SIGINT');
    process.on('SIGTERM', onTerm).on('SIGINT', onInt);
    const timer = setInterval(() => {
      if (stalled || Date.now() - last < stallMs) return;
      stalled = true;
      const quiet = Math.round((Date.now() - last) / 1000);
      console.error(
        `\nci-watchdog: \`${[cmd, ...args].join(' ')}\` (attempt ${attempt}) printed nothing for ${quiet} s; ` +
          `its processes:\n${describeGroup(pgid)}\nci-watchdog: killing process group ${pgid}`,
      );
      killGroup(pgid, 'SIGTERM');
      setTimeout(() => killGroup(pgid, 'SIGKILL'), killGraceMs).unref();
    }, Math.min(5000, Math.max(50, stallMs / 4)));
    child.on('error', (err) => {
      console.error(`ci-watchdog: cannot run ${cmd}: ${err.message}`);
      clearInterval(timer);
      resolve({ code: 127, stalled: false });
    });
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      process.off('SIGTERM', onTerm).off('SIGINT', onInt);
      // Anything the command left running in its group goes with it.
      killGroup(pgid, 'SIGKILL');
      // A command killed by a signal exits as a shell reports it: 128 + the signal's number.
      resolve({ code: code ?? (signal ? 128 + constants.signals[signal] : 1), stalled });
    });
  });
}

let attempt = 1;
for (;;) {
  const { code, stalled } = await runOnce(attempt);
  if (!stalled) process.exit(code);
  if (attempt > retries) {
    console.error(`ci-watchdog: stalled ${attempt} time(s); giving up`);
    process.exit(124);
  }
  attempt += 1;
  console.error(`ci-watchdog: running it again (attempt ${attempt} of ${retries + 1})`);
}
