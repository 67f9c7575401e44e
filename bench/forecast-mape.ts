// Forecast accuracy of the autoscaler's Holt-Winters (src/capacity/forecasting.ts): MAPE of the
// one-hour-ahead forecast — from every whole hour of the evaluation window, the next 12 five-minute
// buckets forecast from everything before — over several seeds (mean and range), at 5, 8 and 15%
// noise. Also the naive forecast ("same as the last bucket", what the autoscaler would do without
// one), the noise floor: the MAPE of a perfect forecast (the noise-free series) against the noisy
// data, which no forecast can beat on average, and for windows longer than a day the MAPE of the
// window's worst calendar day (mean over seeds).
//
// Series (5-minute buckets, daily season of 288), all built on src/capacity/traffic-fixture.ts:
//   fixture      the generated diurnal week as it is (the shape the model fits exactly); window: day 7
//   weekends     two weeks from a Monday, Saturdays and Sundays at 60% of weekdays; window: days 8-14
//   growth       5% growth a day (compounded continuously); window: day 7
//   spike        one hour at 3x (day 6, 14:00-15:00); windows: days 6-7 (the spike and the day after),
//                and day 7 alone (what the spike left in the seasonal indices)
//   level shift  traffic x1.5 from Thursday noon (day 4, 12:00) on; windows: from the shift to the
//                end, and day 7 alone
// A shape multiplies the fixture's noisy series (its noise is multiplicative, so this is the shaped
// rate with the same relative noise) and the noise-free one alike.
//   npx tsx bench/forecast-mape.ts [seeds=10]
import os from 'node:os';
import { forecast, mape } from '../src/capacity/forecasting.js';
import { diurnalWeek } from '../src/capacity/traffic-fixture.js';

const SEEDS = Number(process.argv[2] ?? 10);
const BUCKET_S = 300;
const DAY = 86_400 / BUCKET_S; // 288 buckets
const HOUR = 3_600 / BUCKET_S; // 12 buckets
const NOISES = [0.05, 0.08, 0.15];
// 42 is the seed src/capacity/forecasting.test.ts uses.
const seeds = [42, ...Array.from({ length: SEEDS - 1 }, (_, i) => i + 1)];

interface Shape {
  name: string;
  days: number;
  /** Multiplier of the fixture's rate at bucket i. */
  factor: (i: number) => number;
  /** Evaluation window [from, to), buckets; starts on a whole hour. */
  window: [number, number];
  describe: string;
}
const shapes: Shape[] = [
  { name: 'fixture', days: 7, factor: () => 1, window: [6 * DAY, 7 * DAY], describe: 'day 7' },
  {
    name: 'weekends 60%',
    days: 14,
    factor: (i) => (Math.floor(i / DAY) % 7 >= 5 ? 0.6 : 1), // day 0 is a Monday
    window: [7 * DAY, 14 * DAY],
    describe: 'days 8-14',
  },
  { name: 'growth 5%/day', days: 7, factor: (i) => 1.05 ** (i / DAY), window: [6 * DAY, 7 * DAY], describe: 'day 7' },
  {
    name: 'spike 3x 1 h',
    days: 7,
    factor: (i) => (i >= 5 * DAY + 14 * HOUR && i < 5 * DAY + 15 * HOUR ? 3 : 1),
    window: [5 * DAY, 7 * DAY],
    describe: 'days 6-7',
  },
  {
    name: 'spike 3x 1 h',
    days: 7,
    factor: (i) => (i >= 5 * DAY + 14 * HOUR && i < 5 * DAY + 15 * HOUR ? 3 : 1),
    window: [6 * DAY, 7 * DAY],
    describe: 'day 7 (day after)',
  },
  {
    name: 'level shift x1.5',
    days: 7,
    factor: (i) => (i >= 3 * DAY + 12 * HOUR ? 1.5 : 1),
    window: [3 * DAY + 12 * HOUR, 7 * DAY],
    describe: 'day 4 12:00 - end',
  },
  {
    name: 'level shift x1.5',
    days: 7,
    factor: (i) => (i >= 3 * DAY + 12 * HOUR ? 1.5 : 1),
    window: [6 * DAY, 7 * DAY],
    describe: 'day 7',
  },
];

function evaluate(noisy: number[], clean: number[], [from, to]: [number, number]): { hw: number; naive: number; floor: number; worstDay: number } {
  const actual: number[] = [];
  const predicted: number[] = [];
  const naive: number[] = [];
  const perfect: number[] = [];
  // Per calendar day of the window, for the worst day's MAPE.
  const days = new Map<number, { actual: number[]; predicted: number[] }>();
  for (let origin = from; origin + HOUR <= to; origin += HOUR) {
    const history = noisy.slice(0, origin);
    const f = forecast(history, DAY, HOUR);
    if (f.method !== 'holt-winters') throw new Error(`expected holt-winters at bucket ${origin}, got ${f.method}`);
    const a = noisy.slice(origin, origin + HOUR);
    actual.push(...a);
    predicted.push(...f.values);
    naive.push(...new Array<number>(HOUR).fill(history[history.length - 1] as number));
    perfect.push(...clean.slice(origin, origin + HOUR));
    const day = Math.floor(origin / DAY);
    if (!days.has(day)) days.set(day, { actual: [], predicted: [] });
    days.get(day)!.actual.push(...a);
    days.get(day)!.predicted.push(...f.values);
  }
  const worstDay = Math.max(...[...days.values()].map((d) => mape(d.actual, d.predicted)));
  return { hw: mape(actual, predicted), naive: mape(actual, naive), floor: mape(actual, perfect), worstDay };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const stats = (xs: number[]) => ({ mean: xs.reduce((a, b) => a + b, 0) / xs.length, min: Math.min(...xs), max: Math.max(...xs) });
const started = performance.now();
const rows: Record<string, unknown>[] = [];
console.log(`forecast-mape: one-hour-ahead MAPE, ${seeds.length} seeds (${seeds.join(', ')}); mean [min-max] over seeds`);
console.log('series            noise  window              Holt-Winters            naive    noise floor  worst day (HW)');
for (const shape of shapes) {
  const clean = diurnalWeek({ days: shape.days, bucketS: BUCKET_S, noise: 0, seed: 0 }).map((v, i) => v * shape.factor(i));
  for (const noise of NOISES) {
    const hw: number[] = [];
    const naive: number[] = [];
    const floor: number[] = [];
    const worst: number[] = [];
    for (const seed of seeds) {
      const noisy = diurnalWeek({ days: shape.days, bucketS: BUCKET_S, noise, seed }).map((v, i) => v * shape.factor(i));
      const r = evaluate(noisy, clean, shape.window);
      hw.push(r.hw);
      naive.push(r.naive);
      floor.push(r.floor);
      worst.push(r.worstDay);
    }
    const w = stats(worst);
    const h = stats(hw);
    const n = stats(naive);
    const f = stats(floor);
    console.log(
      `${shape.name.padEnd(17)} ${pct(noise).padStart(5)}  ${shape.describe.padEnd(18)}  ${pct(h.mean).padStart(6)} [${pct(h.min)}-${pct(h.max)}]`.padEnd(73) +
        `${pct(n.mean).padStart(6)}   ${pct(f.mean).padStart(6)}       ${shape.window[1] - shape.window[0] > DAY ? pct(w.mean).padStart(6) : '     -'}`,
    );
    rows.push({
      series: shape.name,
      noise,
      window: shape.describe,
      mape: { mean: +h.mean.toFixed(4), min: +h.min.toFixed(4), max: +h.max.toFixed(4), seed42: +(hw[0] as number).toFixed(4) },
      naive: { mean: +n.mean.toFixed(4), min: +n.min.toFixed(4), max: +n.max.toFixed(4), seed42: +(naive[0] as number).toFixed(4) },
      noiseFloor: { mean: +f.mean.toFixed(4), min: +f.min.toFixed(4), max: +f.max.toFixed(4) },
      worstDay: { mean: +w.mean.toFixed(4), min: +w.min.toFixed(4), max: +w.max.toFixed(4) },
    });
  }
}
console.log(
  JSON.stringify({
    bench: 'forecast-mape',
    bucketS: BUCKET_S,
    horizon: '1 h (12 buckets) from every whole hour of the window',
    seeds,
    rows,
    seconds: +((performance.now() - started) / 1000).toFixed(1),
    machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, load ${os.loadavg()[0]?.toFixed(1)}`,
  }),
);
