// A promise that gives up waiting after `ms`: what it waits for is not cancelled, only no longer
// awaited (readiness checks, a semantic lookup's embedding).

/** `p`'s outcome, or a rejection with `message` once `ms` have passed first. */
export function withTimeout<T>(p: Promise<T>, ms: number, message = 'timeout'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(message)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
