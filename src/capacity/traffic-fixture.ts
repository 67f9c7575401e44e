// Generated diurnal traffic for the forecasting and autoscaler tests and the scaling benchmark:
// a daily shape (night trough, morning ramp, evening peak) with seeded multiplicative noise.

/** A small seeded PRNG (mulberry32), so every run sees the same "random" week. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Normal noise by Box-Muller. */
function gaussian(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** Requests per second at a time of day, before noise: 100 at night, about 800 at the evening peak. */
export function diurnalRate(secondOfDay: number): number {
  const x = (2 * Math.PI * secondOfDay) / 86_400;
  return 420 - 250 * Math.cos(x) - 110 * Math.cos(2 * x - 0.8) + 40 * Math.sin(3 * x);
}

/** `days` of bucketed traffic with `noise` relative standard deviation (0.05 = 5 %). */
export function diurnalWeek(opts: { days: number; bucketS: number; noise: number; seed: number }): number[] {
  const random = seededRandom(opts.seed);
  const out: number[] = [];
  const perDay = 86_400 / opts.bucketS;
  for (let i = 0; i < opts.days * perDay; i++) {
    const base = diurnalRate((i % perDay) * opts.bucketS + opts.bucketS / 2);
    out.push(Math.max(0, base * (1 + opts.noise * gaussian(random))));
  }
  return out;
}
