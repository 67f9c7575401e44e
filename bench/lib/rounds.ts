// Alternating saturation rounds of the pass-through proxy and the gateway (and any other target, such
// as the parsing floor), and the median of their throughput ratios. This VM's speed drifts (the proxy alone 4,988 to 9,870 req/s an hour apart, 2×
// within minutes), so one proxy measurement and one gateway measurement taken one after the other
// can flatter or wrong either side; the median ratio over several alternating pairs is the number
// to compare. Used by bench/gateway-overhead.ts and bench/full-pipeline.ts (`--rounds N`).

/** One round's saturation throughput of each target, req/s, e.g. `{ proxy, gateway }`. */
export type Round<T extends string = string> = Record<T, number>;

export interface RatioSummary {
  rounds: Round[];
  /** The targets compared: `of / over`, e.g. gateway / proxy. */
  of: string;
  over: string;
  /** of / over per round, in round order. */
  ratios: number[];
  /** The median ratio (the mean of the middle two for an even count). */
  median: number;
  min: number;
  max: number;
}

/**
 * `first` is the round already measured; runs `rounds - 1` more, each measuring every target of
 * `first` in its order with `measure` (saturation throughput of that target, req/s).
 */
export async function alternateRounds<T extends string>(first: Round<T>, rounds: number, measure: (target: T) => Promise<number>): Promise<Round<T>[]> {
  const targets = Object.keys(first) as T[];
  const out = [first];
  for (let i = 1; i < rounds; i++) {
    const round = {} as Round<T>;
    for (const t of targets) round[t] = await measure(t);
    out.push(round);
  }
  return out;
}

/** The median (the mean of the middle two for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = (sorted.length - 1) / 2;
  return sorted.length ? ((sorted[Math.floor(mid)] as number) + (sorted[Math.ceil(mid)] as number)) / 2 : NaN;
}

/** The ratio `of / over` in every round (default gateway / proxy). */
export function ratioSummary(rounds: Round[], of = 'gateway', over = 'proxy'): RatioSummary {
  const ratios = rounds.map((r) => (r[of] ?? 0) / (r[over] || 1));
  return { rounds, of, over, ratios, median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}

/** Every round's pair and ratio, then the median (printed only with more than one round). */
export function printRounds(s: RatioSummary): void {
  if (s.rounds.length < 2) return;
  for (const [i, r] of s.rounds.entries()) console.log(`    round ${i + 1}: ${s.over} ${(r[s.over] ?? 0).toFixed(0)}, ${s.of} ${(r[s.of] ?? 0).toFixed(0)} req/s = ${(s.ratios[i] as number).toFixed(2)}`);
  console.log(`  median ${s.of} / ${s.over} over ${s.rounds.length} rounds: ${s.median.toFixed(2)} (min ${s.min.toFixed(2)}, max ${s.max.toFixed(2)})`);
}
