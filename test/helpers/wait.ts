// Polling for a condition in tests: `probe` until it gives a value (not undefined or false), or fail
// naming `what` after `timeoutMs`.
export async function pollUntil<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
