// A vitest reporter that names test files still running after a few minutes (on stderr, every
// STALL_REPORT_SECONDS, default 180). Our slowest file takes about a minute, so such a line points at the
// file a stalled run is stuck in — the part scripts/ci-watchdog.ts's process list cannot name.
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

export default class StallReporter implements Reporter {
  private readonly running = new Map<string, number>();
  private readonly everyMs: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: { everySeconds?: number } = {}) {
    const fromEnv = Number(process.env.STALL_REPORT_SECONDS);
    const seconds = options.everySeconds ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : 180);
    this.everyMs = seconds * 1000;
  }

  onTestModuleStart(module: TestModule): void {
    this.running.set(module.moduleId, Date.now());
    this.timer ??= setInterval(() => this.report(), this.everyMs).unref();
  }

  onTestModuleEnd(module: TestModule): void {
    this.running.delete(module.moduleId);
  }

  onTestRunEnd(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.running.clear();
  }

  /** The files running longer than one period, oldest first, as printed. */
  stillRunning(now = Date.now()): string[] {
    return [...this.running]
      .filter(([, since]) => now - since >= this.everyMs)
      .sort((a, b) => a[1] - b[1])
      .map(([id, since]) => `${relative(process.cwd(), id)} (${Math.round((now - since) / 1000)} s)`);
  }

  private report(): void {
    const files = this.stillRunning();
    if (files.length > 0) process.stderr.write(`[still running] ${files.join(', ')}\n`);
  }
}
