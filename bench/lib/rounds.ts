// Alternating saturation rounds of the pass-through proxy and the gateway, and the median of their
// throughput ratios. This VM's speed drifts (the proxy alone 4,988 to 9,870 req/s an hour apart, 2×
// within minutes), so one proxy measurement and one gateway measurement taken one after the other
// can flatter or wrong either side; the median ratio over several alternating pairs is the number
// to compare. Used by bench/gateway-overhead.ts and bench/full-pipeline.ts (`--rounds N`).

/** One pair's saturation throughput, req/s. */
export interface PairRound {
  proxy: number;
  gateway: number;
}

export interface RatioSummary {
  rounds: PairRound[];
  /** gateway / proxy per round, in round order. */
  ratios: number[];
  /** The median ratio (the mean of the middle two for an even count). */
  median: number;
  min: number;
  max: number;
}

/**
 * `first` is the pair already measured; runs `rounds - 1` more pairs, each the proxy then the
 * gateway, with `measure` (saturation throughput of that target, req/s).
 */
export async function alternateRounds(first: PairRound, rounds: number, measure: (target: 'proxy' | 'gateway') => Promise<number>): Promise<PairRound[]> {
  const out = [first];
  for (let i = 1; i < rounds; i++) {
    const proxy = await measure('proxy');
    const gateway = await measure('gateway');
    out.push({ proxy, gateway });
  }
  return out;
}

/** The median (the mean of the middle two for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = (sorted.length - 1) / 2;
  return sorted.length ? ((sorted[Math.floor(mid)] as number) + (sorted[Math.ceil(mid)] as number)) / 2 : NaN;
}

export function ratioSummary(rounds: PairRound[]): RatioSummary {
  const ratios = rounds.map((r) => r.gateway / (r.proxy || 1));
  return { rounds, ratios, median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}

/** Every round's pair and ratio, then the median (printed only with more than one round). */
export function printRounds(s: RatioSummary): void {
  if (s.rounds.length < 2) return;
  for (const [i, r] of s.rounds.entries()) console.log(`    round ${i + 1}: proxy ${r.proxy.toFixed(0)}, gateway ${r.gateway.toFixed(0)} req/s = ${(s.ratios[i] as number).toFixed(2)}`);
  console.log(`  median over ${s.rounds.length} rounds: ${s.median.toFixed(2)} (min ${s.min.toFixed(2)}, max ${s.max.toFixed(2)})`);
}
