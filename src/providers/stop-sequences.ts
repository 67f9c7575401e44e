// Finds the client's stop sequences in generated text as it streams, for engines whose own stop
// detection works on whole tokens: those drop the entire token that holds a stop (", Lily" for the
// stop "Lily" loses the space too), while the OpenAI contract is the text up to the stop, exactly.
// Text that might be the start of a stop is held back until the next piece decides it.

export class StopSequenceScanner {
  private readonly stops: string[];
  private pending = '';
  private found: string | undefined;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** True once a stop sequence has been seen; later text is discarded. */
  get stopped(): boolean {
    return this.found !== undefined;
  }

  /** The stop sequence that ended the text, once one has. */
  get matched(): string | undefined {
    return this.found;
  }

  /** Takes the next piece of output and returns the text that is safe to emit now. */
  push(text: string): string {
    if (this.stopped) return '';
    const buffer = this.pending + text;
    let first = -1;
    let match: string | undefined;
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) {
        first = at;
        match = stop;
      }
    }
    if (match !== undefined) {
      this.found = match;
      this.pending = '';
      return buffer.slice(0, first);
    }
    const hold = this.longestStopPrefixAtEnd(buffer);
    this.pending = buffer.slice(buffer.length - hold);
    return buffer.slice(0, buffer.length - hold);
  }

  /** At the end of generation: whatever was held back, since no stop completed it. */
  flush(): string {
    const rest = this.stopped ? '' : this.pending;
    this.pending = '';
    return rest;
  }

  private longestStopPrefixAtEnd(buffer: string): number {
    let hold = 0;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, buffer.length); k > hold; k--) {
        if (buffer.endsWith(stop.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return hold;
  }
}
