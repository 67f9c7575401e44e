// The scaling decision in isolation (capacity arithmetic, limits, spot mix) and the autoscaler loop
// over a simulated day after a recorded week: it keeps up with the diurnal load and never reverses
// a decision within the cooldown.
import { describe, expect, it } from 'vitest';
import { ScalerState, decide, requiredReplicas, splitCapacity, type Load } from './autoscaler.js';
import { costOptimizationSchema, scalingSchema } from './config.js';
import { Autoscaler, forecastWindow, type ScaleApplier } from './scaler-service.js';
import { TrafficRecorder } from './traffic.js';
import { diurnalWeek, seededRandom, diurnalRate } from './traffic-fixture.js';

const scaling = scalingSchema.parse({
  enabled: true,
  min_replicas: 3,
  max_replicas: 20,
  per_replica: { requests_per_s: 50 },
  headroom: 0.2,
  cooldown: { scale_up_s: 120, scale_down_s: 600 },
  max_step: 4,
});
const cost = costOptimizationSchema.parse({
  spot_instances: { enabled: true, max_fraction: 0.7, min_on_demand: 2 },
  on_demand_cost_per_replica_hour: 1,
  spot_cost_per_replica_hour: 0.3,
});
const load = (requestsPerS: number, tokensPerS = 0, queueDepth = 0): Load => ({ requestsPerS, tokensPerS, queueDepth });

describe('decide', () => {
  it('sizes from the busiest dimension with headroom', () => {
    expect(requiredReplicas(load(450), scaling).replicas).toBe(11); // 9 × 1.2 = 10.8
    const withTokens = scalingSchema.parse({ per_replica: { requests_per_s: 50, tokens_per_s: 1000, queue_depth: 10 }, headroom: 0 });
    expect(requiredReplicas(load(100, 7_000, 30), withTokens)).toMatchObject({ replicas: 7 });
    expect(requiredReplicas(load(100, 1_000, 55), withTokens)).toMatchObject({ replicas: 6 });
    expect(requiredReplicas(load(100), withTokens).reason).toContain('requests/s');
  });

  it('provisions for the predicted peak when it is above the current load', () => {
    const d = decide({ now: 0, current: 3, load: load(100), predictedPeak: load(400) }, new ScalerState(), scaling, cost);
    expect([d.desired, d.target, d.direction]).toEqual([10, 7, 'up']); // 8 × 1.2 = 9.6 -> 10, step +4
    expect(d.reasons.join('; ')).toContain('step limited to +4');
  });

  it('clamps to min and max replicas', () => {
    expect(decide({ now: 0, current: 3, load: load(0), predictedPeak: load(0) }, new ScalerState(), scaling, cost).desired).toBe(3);
    const big = decide({ now: 0, current: 20, load: load(5_000), predictedPeak: load(0) }, new ScalerState(), scaling, cost);
    expect([big.desired, big.direction]).toEqual([20, 'hold']);
    expect(big.reasons.join('; ')).toContain('capped at max_replicas 20');
  });

  it('never goes below one replica: the scaled Deployment runs the autoscaler itself', () => {
    expect(() => scalingSchema.parse({ min_replicas: 0 })).toThrow(/min_replicas must be at least 1/);
    // A config built without the schema, no load at all and no forecast: still one replica, never -0.
    const zero = { ...scaling, min_replicas: 0, cooldown: { scale_up_s: 0, scale_down_s: 0 }, max_step: 10 };
    const d = decide({ now: 0, current: 3, load: load(0), predictedPeak: load(0) }, new ScalerState(), zero, cost);
    expect([d.desired, d.target, d.direction]).toEqual([1, 1, 'down']);
    expect(Object.is(requiredReplicas(load(0), zero).replicas, 0)).toBe(true);
    expect(requiredReplicas(load(Number.NaN), zero).replicas).toBe(0);
  });

  it('holds a scale-up within the cooldown after a change, and a scale-down until the load stayed low', () => {
    const state = new ScalerState();
    // Every decision here is applied, as the autoscaler commits one whose patch succeeded.
    const applied = (input: Parameters<typeof decide>[0]) => {
      const d = decide(input, state, scaling, cost);
      state.commit(d);
      return d;
    };
    const up = applied({ now: 0, current: 3, load: load(200), predictedPeak: load(0) });
    expect(up.target).toBe(5);
    const again = applied({ now: 60_000, current: 5, load: load(300), predictedPeak: load(0) });
    expect([again.desired, again.target]).toEqual([8, 5]);
    expect(again.reasons.join('; ')).toContain('scale-up held');
    const later = applied({ now: 130_000, current: 5, load: load(300), predictedPeak: load(0) });
    expect(later.target).toBe(8);
    // Load drops at once: the fleet shrinks only after the 600 s window holds no higher wish.
    let t = 130_000;
    const targets: number[] = [];
    for (let i = 0; i < 30; i++) {
      t += 60_000;
      targets.push(applied({ now: t, current: targets.at(-1) ?? 8, load: load(50), predictedPeak: load(0) }).target);
    }
    const firstDown = targets.findIndex((x) => x < 8);
    expect(130_000 + (firstDown + 1) * 60_000 - 130_000).toBeGreaterThanOrEqual(600_000);
    expect(targets.at(-1)).toBe(3);
  });

  it('mixes spot and on-demand by cost_optimization', () => {
    expect(splitCapacity(10, cost)).toEqual({ onDemand: 3, spot: 7, estimatedCostPerHour: 3 + 7 * 0.3 });
    expect(splitCapacity(2, cost)).toMatchObject({ onDemand: 2, spot: 0 });
    // All-spot settings still keep one on-demand replica, which runs the autoscaler when spot capacity goes.
    const allSpot = costOptimizationSchema.parse({ spot_instances: { enabled: true, max_fraction: 1, min_on_demand: 0, deployment: 'spot' } });
    expect(splitCapacity(6, allSpot)).toMatchObject({ onDemand: 1, spot: 5 });
    const noSpot = costOptimizationSchema.parse({ on_demand_cost_per_replica_hour: 2 });
    expect(splitCapacity(5, noSpot)).toEqual({ onDemand: 5, spot: 0, estimatedCostPerHour: 10 });
  });
});

describe('Autoscaler over a simulated day', () => {
  it('keeps capacity ahead of diurnal load and never reverses within the cooldown', async () => {
    const bucketS = scaling.forecast.bucket_s;
    let now = Date.UTC(2025, 0, 6); // a Monday, 00:00
    const recorder = new TrafficRecorder({ bucketMs: bucketS * 1000, historyBuckets: scaling.forecast.history_buckets, now: () => now });
    // Six recorded days, then day 7 arrives live.
    const history = diurnalWeek({ days: 6, bucketS, noise: 0.08, seed: 7 });
    recorder.load(history.map((rps, i) => ({ start: now - (history.length - i) * bucketS * 1000, requestsPerS: rps, tokensPerS: rps * 40, queueDepth: 0 })));
    const applied: Array<[number, number]> = [];
    const applier: ScaleApplier = {
      getReplicas: async () => applied.at(-1)?.[1] ?? 3,
      setReplicas: async (_name, n) => void applied.push([now, n]),
    };
    const scaler = new Autoscaler({ scaling: { ...scaling, dry_run: false }, cost: { ...cost, spot_instances: { ...cost.spot_instances, deployment: undefined } }, recorder, applier, now: () => now });

    const random = seededRandom(99);
    let underProvisioned = 0;
    let ticks = 0;
    for (let s = 0; s < 86_400; s += 60) {
      const rps = diurnalRate(s) * (1 + 0.08 * (random() * 2 - 1));
      recorder.record(rps * 60, rps * 60 * 40);
      now += 60_000;
      await scaler.tick();
      const replicas = applied.at(-1)?.[1] ?? 3;
      ticks++;
      if (replicas * scaling.per_replica.requests_per_s < rps) underProvisioned++;
    }
    // Capacity (without headroom) fell short of the live load in under 2 % of minutes.
    expect(underProvisioned / ticks).toBeLessThan(0.02);
    // It did follow the day: up to the evening peak and back down at night.
    const counts = applied.map(([, n]) => n);
    expect(Math.max(...counts)).toBeGreaterThanOrEqual(18);
    expect(counts.at(-1)).toBeLessThanOrEqual(8);
    // No flapping: every change, and so every reversal, comes after the cooldown of its direction.
    for (let i = 1; i < applied.length; i++) {
      const [t0, n0] = applied[i - 1] as [number, number];
      const [t1, n1] = applied[i] as [number, number];
      const up = n1 > n0;
      const cooldown = (up ? scaling.cooldown.scale_up_s : scaling.cooldown.scale_down_s) * 1000;
      expect(t1 - t0).toBeGreaterThanOrEqual(cooldown);
      expect(Math.abs(n1 - n0)).toBeLessThanOrEqual(scaling.max_step);
    }
    const report = scaler.report();
    expect(report.forecast?.method).toBe('holt-winters');
    expect(report.forecast?.points).toHaveLength(12);
    expect(report.decision?.reasons.length).toBeGreaterThan(0);
  });

  it('in dry-run mode logs the decision and applies nothing', async () => {
    let now = 300_000 * 4_000; // a bucket boundary: the minute below is the open bucket's whole age
    const recorder = new TrafficRecorder({ bucketMs: 300_000, historyBuckets: 100, now: () => now });
    const calls: number[] = [];
    const logs: string[] = [];
    const scaler = new Autoscaler({
      scaling: { ...scaling, dry_run: true },
      cost,
      recorder,
      applier: { getReplicas: async () => 3, setReplicas: async (_d, n) => void calls.push(n) },
      logger: { info: (_o: unknown, msg?: string) => void logs.push(String(msg)), warn: () => undefined } as never,
      now: () => now,
    });
    recorder.record(500 * 60, 0);
    now += 60_000;
    const d = await scaler.tick();
    expect(d?.direction).toBe('up');
    expect(calls).toEqual([]);
    expect(logs.join('\n')).toContain('(dry run): would scale default/inferenceflow 3 -> 7');
    expect(scaler.report()).toMatchObject({ dryRun: true, decision: { target: 7 } });
  });
});

describe('a scale patch that fails', () => {
  it('starts no cooldown: the next round retries, and the history marks the decision as not applied', async () => {
    let now = 300_000 * 4_000;
    const recorder = new TrafficRecorder({ bucketMs: 300_000, historyBuckets: 100, now: () => now });
    const calls: number[] = [];
    let fail = true;
    let replicas = 3;
    const scaler = new Autoscaler({
      scaling: { ...scaling, dry_run: false },
      cost: costOptimizationSchema.parse({}),
      recorder,
      applier: {
        getReplicas: async () => replicas,
        setReplicas: async (_d, n) => {
          calls.push(n);
          if (fail) throw new Error('503 from the API server');
          replicas = n;
        },
      },
      now: () => now,
    });
    recorder.record(500 * 60, 0);
    now += 60_000;
    const first = await scaler.tick();
    expect(first).toMatchObject({ direction: 'up', target: 7 });
    expect(first?.error).toContain('503 from the API server');
    // One interval later, well within scale_up_s (120 s): the failed change did not happen, so it is retried.
    fail = false;
    recorder.record(500 * 60, 0);
    now += 60_000;
    const second = await scaler.tick();
    expect(second).toMatchObject({ direction: 'up', current: 3, target: 7 });
    expect(second?.error).toBeUndefined();
    expect(calls).toEqual([7, 7]);
    // The one that was applied starts the cooldown.
    recorder.record(900 * 60, 0);
    now += 60_000;
    const third = await scaler.tick();
    expect(third?.reasons.join('; ')).toContain('scale-up held');
    expect(scaler.report().history.map((d) => d.error !== undefined)).toEqual([true, false, false]);
  });
});

describe('the forecast window the autoscaler provisions for', () => {
  it('reaches lead_time_s past now: the first forecast value is the bucket already open', () => {
    // Buckets of 300 s; the open one started 290 s ago (firstAt = 0, now = 290 s), lead 600 s: the
    // window [290 s, 890 s] overlaps buckets 0, 1 and 2.
    expect(forecastWindow(0, 300_000, 290_000, 600_000, 12)).toEqual({ from: 0, to: 3 });
    expect(forecastWindow(0, 300_000, 0, 600_000, 12)).toEqual({ from: 0, to: 2 });
    expect(forecastWindow(0, 300_000, 10_000, 0, 12)).toEqual({ from: 0, to: 1 });
    // Clamped to the forecast's length; a stale series (now past its first bucket) skips the past.
    expect(forecastWindow(0, 300_000, 290_000, 7_200_000, 12)).toEqual({ from: 0, to: 12 });
    expect(forecastWindow(0, 300_000, 650_000, 600_000, 12)).toEqual({ from: 2, to: 5 });
  });

  it('provisions for a daily spike that starts 310 s from now (lead time 600 s)', async () => {
    const bucketS = 300;
    const bucketMs = bucketS * 1000;
    const open = Date.UTC(2025, 0, 6, 12); // start of the open bucket
    const now = open + 290_000; // 290 s into it: the bucket after next starts 310 s from now
    const spikeStart = open + 2 * bucketMs;
    const recorder = new TrafficRecorder({ bucketMs, historyBuckets: 2_304, now: () => now });
    // Three recorded days at 100 req/s with one 1000 req/s bucket a day, at the spike's time of day.
    const days = 3;
    const points = Array.from({ length: days * 288 }, (_, i) => {
      const start = open - (days * 288 - i) * bucketMs;
      const spike = (spikeStart - start) % 86_400_000 === 0;
      return { start, requestsPerS: spike ? 1_000 : 100, tokensPerS: 0, queueDepth: 0 };
    });
    recorder.load(points);
    const s = { ...scaling, lead_time_s: 600, dry_run: true };
    const scaler = new Autoscaler({ scaling: s, cost: costOptimizationSchema.parse({}), recorder, now: () => now });
    const decision = await scaler.tick();
    const report = scaler.report();
    const spikePoint = report.forecast?.points.find((p) => p.at === new Date(spikeStart).toISOString());
    expect(spikePoint?.requestsPerS).toBeGreaterThan(900);
    expect(report.forecast?.points[0]?.at).toBe(new Date(open).toISOString());
    expect(decision?.load.predictedPeak.requestsPerS).toBeGreaterThan(900);
    expect(decision?.desired).toBe(s.max_replicas);
  });
});

describe('replicas that cannot be read', () => {
  const quiet = { info: () => undefined, warn: () => undefined } as never;

  it('hold the round: nothing is patched from the last count known (a start-up guess), and the report says why', async () => {
    let now = 300_000 * 4_000;
    const recorder = new TrafficRecorder({ bucketMs: 300_000, historyBuckets: 100, now: () => now });
    const patches: number[] = [];
    let readable = false;
    const scaler = new Autoscaler({
      scaling: { ...scaling, dry_run: false },
      cost: costOptimizationSchema.parse({}),
      recorder,
      applier: {
        getReplicas: async () => {
          if (!readable) throw new Error('503 etcdserver: request timed out');
          return 15;
        },
        setReplicas: async (_d, n) => void patches.push(n),
      },
      logger: quiet,
      now: () => now,
    });
    recorder.record(400 * 60, 0); // 400 req/s: 10 replicas wanted, 15 running, 3 (min_replicas) assumed
    now += 60_000;
    const d = await scaler.tick();
    expect(d).toMatchObject({ direction: 'hold', error: expect.stringContaining('etcdserver') });
    expect(patches).toEqual([]);
    expect(scaler.report().lastError).toContain('reading replicas failed');
    // Readable again: the decision starts from the 15 that run (a scale-down, which waits out its window).
    readable = true;
    recorder.record(400 * 60, 0);
    now += 60_000;
    expect(await scaler.tick()).toMatchObject({ current: 15 });
    expect(patches.every((n) => n >= 10)).toBe(true);
  });

  it('with spot instances, one of the two Deployments unreadable is not read as zero', async () => {
    let now = 300_000 * 4_000;
    const recorder = new TrafficRecorder({ bucketMs: 300_000, historyBuckets: 100, now: () => now });
    const running: Record<string, number> = { inferenceflow: 5, 'inferenceflow-spot': 11 };
    const scaler = new Autoscaler({
      scaling: { ...scaling, dry_run: false },
      cost: costOptimizationSchema.parse({ spot_instances: { enabled: true, max_fraction: 0.7, min_on_demand: 2, deployment: 'inferenceflow-spot' } }),
      recorder,
      applier: {
        getReplicas: async (dep) => {
          if (dep === 'inferenceflow-spot') throw new Error('429 Too Many Requests');
          return running[dep] as number;
        },
        setReplicas: async (dep, n) => void (running[dep] = n),
      },
      logger: quiet,
      now: () => now,
    });
    recorder.record(650 * 60, 0); // 16 wanted: what runs (5 + 11)
    now += 60_000;
    expect(await scaler.tick()).toMatchObject({ direction: 'hold' });
    expect(running).toEqual({ inferenceflow: 5, 'inferenceflow-spot': 11 });
  });
});
