// Percentiles of sorted samples, shared by the load generators (load.ts, mixed-load.ts) and the
// benchmarks; apart from both so neither generator imports the other for it.

/** Nearest rank: the smallest sample with at least p% of the samples at or below it; NaN for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}
