// The sleep of a polling loop that work can cut short: the batch runner's and the webhook outbox's.
// `kick()` wakes a sleeping loop at once, or, when the loop is busy, makes its next sleep return at
// once, so work announced while the loop was looking elsewhere is not left for a whole interval.
export class Wakeup {
  private wake: (() => void) | undefined;
  private kicked = false;

  kick(): void {
    if (this.wake) this.wake();
    else this.kicked = true;
  }

  /** Waits up to `ms`; true when a kick ended (or had already ended) the wait. */
  async sleep(ms: number): Promise<boolean> {
    if (this.kicked) {
      this.kicked = false;
      return true;
    }
    const kicked = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
    this.wake = undefined;
    return kicked;
  }
}
