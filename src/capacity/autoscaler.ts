// The scaling decision (seed 002 `scaler.py`, seed 000 `scaling:`): replicas from the larger of
// current and forecast load over the lead time, divided by per-replica capacity, times 1 + headroom;
// clamped to min/max; a change waits out the cooldown since the last change and moves at most
// max_step replicas; a scale-down takes the highest wish of its cooldown window so it never flaps.
// decide() does not mark the change made: the caller commits it (ScalerState.commit) once applied.
import type { CostOptimizationConfig, ScalingConfig } from './config.js';

export interface Load {
  requestsPerS: number;
  tokensPerS: number;
  queueDepth: number;
}

export interface CapacitySplit {
  onDemand: number;
  spot: number;
  estimatedCostPerHour: number;
}

export interface ScalingDecision {
  at: number;
  current: number;
  /** What the load asks for, before cooldown and step limits. */
  desired: number;
  /** What is applied now. */
  target: number;
  direction: 'up' | 'down' | 'hold';
  reasons: string[];
  load: { current: Load; predictedPeak: Load };
  split: CapacitySplit;
  /** Set when applying this decision failed: the replicas stayed at `current`. */
  error?: string;
}

/** ScalerState as JSON (kept in Redis so a new leader inherits the cooldown and the scale-down window). */
export interface ScalerStateSnapshot {
  /** Epoch ms of the last change; null for none. */
  lastChangeAt: number | null;
  wishes: Array<{ at: number; desired: number }>;
}

/** What the decision remembers between ticks. */
export class ScalerState {
  lastChangeAt = -Infinity;
  /** Recent desired counts, for the scale-down stabilisation window. */
  readonly wishes: Array<{ at: number; desired: number }> = [];

  snapshot(): ScalerStateSnapshot {
    return { lastChangeAt: Number.isFinite(this.lastChangeAt) ? this.lastChangeAt : null, wishes: this.wishes.map((w) => ({ ...w })) };
  }

  /**
   * Records a decision as carried out. Only an applied change starts the cooldown: decide() leaves
   * the time alone, so a patch that failed is retried at the next round instead of a cooldown later.
   */
  commit(decision: ScalingDecision): void {
    if (decision.direction !== 'hold') this.lastChangeAt = decision.at;
  }

  /** Takes over a snapshot (another leader's), replacing what this one remembered. */
  restore(s: ScalerStateSnapshot): void {
    this.lastChangeAt = s.lastChangeAt ?? -Infinity;
    this.wishes.splice(0, this.wishes.length, ...s.wishes.filter((w) => Number.isFinite(w.at) && Number.isFinite(w.desired)).sort((a, b) => a.at - b.at));
  }
}

/** Replicas the load needs: the busiest dimension, with headroom, rounded up. */
export function requiredReplicas(load: Load, scaling: ScalingConfig): { replicas: number; reason: string } {
  const cap = scaling.per_replica;
  const needs: Array<[string, number]> = [['requests/s', load.requestsPerS / cap.requests_per_s]];
  if (cap.tokens_per_s) needs.push(['tokens/s', load.tokensPerS / cap.tokens_per_s]);
  if (cap.queue_depth) needs.push(['queue depth', load.queueDepth / cap.queue_depth]);
  const [name, need] = needs.reduce((a, b) => (b[1] > a[1] ? b : a));
  // No load gives ceil(-1e-9) = -0, a bad load NaN: both count as no need (min_replicas raises it).
  const raw = Math.ceil(need * (1 + scaling.headroom) - 1e-9);
  const replicas = raw > 0 ? raw : 0;
  return { replicas, reason: `${name} needs ${need.toFixed(2)} replicas, ${replicas} with ${Math.round(scaling.headroom * 100)}% headroom` };
}

/** The spot / on-demand mix for a replica count (cost_optimization.spot_instances). */
export function splitCapacity(total: number, cost: CostOptimizationConfig): CapacitySplit {
  const s = cost.spot_instances;
  let onDemand = total;
  // At least one on-demand replica whatever min_on_demand and max_fraction say: spot capacity can be
  // taken back all at once, and the on-demand Deployment (scaling.kubernetes.deployment, by default
  // the gateway's own) must keep a pod that runs the autoscaler to scale back up.
  if (s.enabled) onDemand = Math.min(total, Math.max(s.min_on_demand, 1, Math.ceil(total * (1 - s.max_fraction) - 1e-9)));
  const spot = total - onDemand;
  return {
    onDemand,
    spot,
    estimatedCostPerHour: onDemand * cost.on_demand_cost_per_replica_hour + spot * cost.spot_cost_per_replica_hour,
  };
}

export function decide(
  input: { now: number; current: number; load: Load; predictedPeak: Load },
  state: ScalerState,
  scaling: ScalingConfig,
  cost: CostOptimizationConfig,
): ScalingDecision {
  const { now, current } = input;
  const demand: Load = {
    requestsPerS: Math.max(input.load.requestsPerS, input.predictedPeak.requestsPerS),
    tokensPerS: Math.max(input.load.tokensPerS, input.predictedPeak.tokensPerS),
    queueDepth: Math.max(input.load.queueDepth, input.predictedPeak.queueDepth),
  };
  const reasons: string[] = [];
  const need = requiredReplicas(demand, scaling);
  reasons.push(need.reason);
  let desired = need.replicas;
  // At least one replica even for a config built without the schema: the scaled Deployment runs
  // the autoscaler itself (see min_replicas in config.ts).
  const floor = Math.max(1, scaling.min_replicas);
  if (desired < floor) {
    reasons.push(`raised to min_replicas ${floor}`);
    desired = floor;
  } else if (desired > scaling.max_replicas) {
    reasons.push(`capped at max_replicas ${scaling.max_replicas}`);
    desired = scaling.max_replicas;
  }

  const downWindowMs = scaling.cooldown.scale_down_s * 1000;
  state.wishes.push({ at: now, desired });
  while (state.wishes.length > 0 && (state.wishes[0] as { at: number }).at < now - downWindowMs) state.wishes.shift();

  const sinceChange = now - state.lastChangeAt;
  let target = current;
  if (desired > current) {
    if (sinceChange < scaling.cooldown.scale_up_s * 1000) {
      reasons.push(`scale-up held: ${Math.round(sinceChange / 1000)} s since the last change, cooldown ${scaling.cooldown.scale_up_s} s`);
    } else {
      target = Math.min(desired, current + scaling.max_step);
      if (target < desired) reasons.push(`step limited to +${scaling.max_step}`);
    }
  } else if (desired < current) {
    // The highest wish of the window: a dip shorter than the cooldown does not shrink the fleet.
    const stable = Math.max(...state.wishes.map((w) => w.desired));
    if (sinceChange < downWindowMs) {
      reasons.push(`scale-down held: ${Math.round(sinceChange / 1000)} s since the last change, cooldown ${scaling.cooldown.scale_down_s} s`);
    } else if (stable >= current) {
      reasons.push(`scale-down held: load asked for ${stable} replicas within the last ${scaling.cooldown.scale_down_s} s`);
    } else {
      target = Math.max(stable, current - scaling.max_step);
      if (target > stable) reasons.push(`step limited to -${scaling.max_step}`);
    }
  }
  const direction = target > current ? 'up' : target < current ? 'down' : 'hold';
  const split = splitCapacity(target, cost);
  if (cost.spot_instances.enabled) reasons.push(`${split.onDemand} on-demand + ${split.spot} spot`);
  return { at: now, current, desired, target, direction, reasons, load: { current: input.load, predictedPeak: input.predictedPeak }, split };
}
