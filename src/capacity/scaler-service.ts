// The autoscaler loop: every interval it forecasts the next hour from the recorded traffic, decides,
// and applies the decision through a ScaleApplier (the Kubernetes scale subresource) or only logs it
// in dry-run mode. `report()` is what `GET /v1/scaling` shows: forecast, decision and reasons.
import type { Logger } from 'pino';
import type { CostOptimizationConfig, ScalingConfig } from './config.js';
import { ScalerState, decide, type Load, type ScalerStateSnapshot, type ScalingDecision } from './autoscaler.js';
import { forecast, type Forecast } from './forecasting.js';
import type { TrafficRecorder } from './traffic.js';
import { localTrafficSource, type RedisLeaderLock, type TrafficSource } from './shared-traffic.js';

/** Where decisions go: reads and sets a Deployment's replica count. */
export interface ScaleApplier {
  /** The namespace it scales in, when it knows it (the Kubernetes client: config, else its credentials'). */
  readonly namespace?: string;
  getReplicas(deployment: string): Promise<number>;
  setReplicas(deployment: string, replicas: number): Promise<void>;
}

export interface ScalingReport {
  enabled: boolean;
  /** `single`: one replica decides alone; with Redis one `leader` decides and `follower`s show its report. */
  role: 'single' | 'leader' | 'follower';
  dryRun: boolean;
  target: { namespace: string; deployment: string; spotDeployment?: string };
  forecast?: {
    method: Forecast['method'];
    bucketS: number;
    params?: Forecast['params'];
    rmse?: number;
    points: Array<{ at: string; requestsPerS: number; tokensPerS: number }>;
  };
  decision?: ScalingDecision;
  /** Set when applying the last decision failed. */
  lastError?: string;
  history: ScalingDecision[];
}

export interface AutoscalerOptions {
  scaling: ScalingConfig;
  cost: CostOptimizationConfig;
  recorder: TrafficRecorder;
  /** Where traffic is read from; the local recorder by default, the shared Redis store with replicas. */
  source?: TrafficSource;
  /**
   * With several replicas: only the lock holder decides and applies. It publishes its decision state
   * inside its report, and a replica that becomes leader takes it over (cooldown, scale-down window,
   * replica count, history) instead of starting afresh; stop() releases the lock.
   */
  leader?: Pick<RedisLeaderLock, 'isLeader' | 'publish' | 'lastReport' | 'release'>;
  applier?: ScaleApplier;
  logger?: Pick<Logger, 'info' | 'warn'>;
  now?: () => number;
}

const HISTORY = 50;

/** What a leader hands over to the next one, inside the report it publishes. */
export interface LeaderState extends ScalerStateSnapshot {
  /** Replicas as last applied or read. */
  known: number;
}

/** The report as a leader publishes it (`<lock>:report`): what followers show, plus its handover state. */
type PublishedReport = ScalingReport & { handover?: LeaderState };

/**
 * The forecast values (`values[i]` covering `[firstAt + i·bucketMs, firstAt + (i+1)·bucketMs)`) that
 * overlap `[now, now + leadMs]`: indexes `from` (inclusive) to `to` (exclusive), at least one value,
 * within the `length` forecast.
 */
export function forecastWindow(firstAt: number, bucketMs: number, now: number, leadMs: number, length: number): { from: number; to: number } {
  const from = Math.min(Math.max(0, Math.floor((now - firstAt) / bucketMs)), Math.max(0, length - 1));
  const to = Math.min(length, Math.max(from + 1, Math.ceil((now + leadMs - firstAt) / bucketMs)));
  return { from, to };
}

export class Autoscaler {
  private readonly scaling: ScalingConfig;
  private readonly cost: CostOptimizationConfig;
  private readonly source: TrafficSource;
  private readonly leader?: AutoscalerOptions['leader'];
  private role: ScalingReport['role'];
  private leaderReport?: PublishedReport;
  private readonly applier?: ScaleApplier;
  private readonly logger?: Pick<Logger, 'info' | 'warn'>;
  private readonly now: () => number;
  private readonly state = new ScalerState();
  private readonly history: ScalingDecision[] = [];
  private lastForecast?: ScalingReport['forecast'];
  private fitted?: { lastStart: number; length: number; rps: Forecast; tps: Forecast };
  private lastError?: string;
  /** Replicas as last applied (dry run) or read; starts at min_replicas. */
  private known: number;
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private inFlight?: Promise<unknown>;
  private stopped = false;

  constructor(opts: AutoscalerOptions) {
    this.scaling = opts.scaling;
    this.cost = opts.cost;
    this.source = opts.source ?? localTrafficSource(opts.recorder);
    this.leader = opts.leader;
    this.role = opts.leader ? 'follower' : 'single';
    this.applier = opts.applier;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.known = opts.scaling.min_replicas;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick().catch(() => undefined), this.scaling.interval_s * 1000);
    this.timer.unref();
  }

  /**
   * Stops the loop; waits for a round in progress, then releases the leader lock if this replica
   * holds it, so another replica leads from its next tick rather than after the lock's TTL.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
    if (this.leader && (await this.leader.release().catch(() => false))) this.role = 'follower';
  }

  /** One forecast-decide-apply round. */
  async tick(): Promise<ScalingDecision | undefined> {
    if (this.ticking || this.stopped) return undefined;
    this.ticking = true;
    const round = this.tickOnce();
    this.inFlight = round.catch(() => undefined);
    try {
      return await round;
    } finally {
      this.ticking = false;
      this.inFlight = undefined;
    }
  }

  private async tickOnce(): Promise<ScalingDecision | undefined> {
    try {
      if (this.leader) {
        const was = this.role;
        this.role = (await this.leader.isLeader()) ? 'leader' : 'follower';
        if (this.role === 'follower') {
          this.leaderReport = await this.leader.lastReport<PublishedReport>();
          return undefined;
        }
        if (was !== 'leader') await this.takeOver();
      }
      const decision = await this.round();
      if (this.leader) {
        const published: PublishedReport = { ...this.report(), handover: this.handover() };
        await this.leader.publish(published, this.stateTtlMs());
      }
      return decision;
    } catch (err) {
      this.lastError = `autoscaler round failed: ${(err as Error).message}`;
      this.logger?.warn({ err }, this.lastError);
      throw err;
    }
  }

  /**
   * Just became leader: continue from the previous leader's state and history, if it left any. Read
   * afresh rather than the report this replica last read as a follower: the old leader may have
   * published once more since (its last round before it released the lock).
   */
  private async takeOver(): Promise<void> {
    const leader = this.leader as NonNullable<AutoscalerOptions['leader']>;
    const report = await leader.lastReport<PublishedReport>();
    const state = report?.handover;
    if (state) {
      this.state.restore(state);
      if (Number.isFinite(state.known)) this.known = state.known;
    }
    if (report?.history) this.history.splice(0, this.history.length, ...report.history.slice(-HISTORY));
  }

  private handover(): LeaderState {
    return { ...this.state.snapshot(), known: this.known };
  }

  /** The handover matters for as long as a cooldown or the scale-down window can still hold a decision. */
  private stateTtlMs(): number {
    const c = this.scaling.cooldown;
    return (Math.max(c.scale_up_s, c.scale_down_s) + this.scaling.interval_s * 3) * 1000;
  }

  private async round(): Promise<ScalingDecision> {
    const f = this.scaling.forecast;
    const series = await this.source.series();
    const season = f.season_s / f.bucket_s;
    const horizon = Math.max(1, Math.round(f.horizon_s / f.bucket_s));
    const bucketMs = f.bucket_s * 1000;
    const now = this.now();
    // The forecast's first value is the bucket after the last closed one: the bucket open now.
    const lastStart = series.length > 0 ? (series[series.length - 1] as { start: number }).start : Math.floor(now / bucketMs) * bucketMs - bucketMs;
    const firstAt = lastStart + bucketMs;
    // The series only changes when a bucket closes; ticks in between reuse the fitted forecast.
    if (!this.fitted || this.fitted.lastStart !== lastStart || this.fitted.length !== series.length) {
      this.fitted = {
        lastStart,
        length: series.length,
        rps: forecast(series.map((p) => p.requestsPerS), season, horizon),
        tps: forecast(series.map((p) => p.tokensPerS), season, horizon),
      };
    }
    const { rps, tps } = this.fitted;
    this.lastForecast = {
      method: rps.method,
      bucketS: f.bucket_s,
      params: rps.params,
      rmse: rps.rmse,
      points: rps.values.map((v, i) => ({
        at: new Date(firstAt + i * bucketMs).toISOString(),
        requestsPerS: v,
        tokensPerS: tps.values[i] ?? 0,
      })),
    };
    // Provision now for the peak of the window a new replica needs to become useful: every forecast
    // bucket that overlaps [now, now + lead_time_s]. values[i] covers [firstAt + i·bucket, firstAt + (i+1)·bucket),
    // and values[0] is the bucket already open, so the window reaches past lead_time_s / bucket_s values.
    const { from, to } = forecastWindow(firstAt, bucketMs, now, this.scaling.lead_time_s * 1000, rps.values.length);
    const current = await this.source.current();
    const predictedPeak: Load = {
      requestsPerS: Math.max(0, ...rps.values.slice(from, to)),
      tokensPerS: Math.max(0, ...tps.values.slice(from, to)),
      queueDepth: current.queueDepth,
    };

    const k = this.scaling.kubernetes;
    const spotDeployment = this.cost.spot_instances.enabled ? this.cost.spot_instances.deployment : undefined;
    // What runs now, both Deployments read before either counts: a count that cannot be read is not
    // guessed (the last one known may be a start-up's min_replicas or another leader's), and the round
    // applies nothing — a patch from a wrong count would cut the Deployment past every cooldown.
    let unread: string | undefined;
    if (!this.scaling.dry_run && this.applier) {
      try {
        const onDemand = await this.applier.getReplicas(k.deployment);
        const spot = spotDeployment ? await this.applier.getReplicas(spotDeployment) : 0;
        this.known = onDemand + spot;
      } catch (err) {
        unread = this.lastError = `reading replicas failed: ${(err as Error).message}`;
      }
    }
    let decision = decide({ now, current: this.known, load: current, predictedPeak }, this.state, this.scaling, this.cost);
    if (unread) {
      decision = { ...decision, target: decision.current, direction: 'hold', reasons: [...decision.reasons, 'the replicas running could not be read: nothing applied this round'], error: unread };
      this.logger?.warn({ err: unread }, 'autoscaler: could not read the replicas running; holding this round');
    }
    this.history.push(decision);
    if (this.history.length > HISTORY) this.history.shift();

    if (decision.direction === 'hold') return decision;
    if (this.scaling.dry_run || !this.applier) {
      this.logger?.info({ decision }, `autoscaler (dry run): would scale ${this.namespace()}/${k.deployment} ${decision.current} -> ${decision.target}`);
      this.known = decision.target;
      this.state.commit(decision);
      return decision;
    }
    try {
      if (spotDeployment) {
        await this.applier.setReplicas(k.deployment, decision.split.onDemand);
        await this.applier.setReplicas(spotDeployment, decision.split.spot);
      } else {
        await this.applier.setReplicas(k.deployment, decision.target);
      }
      this.known = decision.target;
      this.state.commit(decision);
      this.lastError = undefined;
      this.logger?.info({ decision }, `autoscaler: scaled ${this.namespace()}/${k.deployment} ${decision.current} -> ${decision.target}`);
    } catch (err) {
      // The cooldown does not start (nothing changed): the next round tries again.
      this.lastError = `applying ${decision.target} replicas failed: ${(err as Error).message}`;
      decision.error = this.lastError;
      this.logger?.warn({ err }, this.lastError);
    }
    return decision;
  }

  /** Where the decisions go: the applier's namespace, else the configured one, else `default`. */
  private namespace(): string {
    return this.applier?.namespace ?? this.scaling.kubernetes.namespace ?? 'default';
  }

  report(): ScalingReport {
    if (this.role === 'follower' && this.leaderReport) {
      const { handover: _handover, ...shown } = this.leaderReport;
      return { ...shown, role: 'follower' };
    }
    const k = this.scaling.kubernetes;
    const spot = this.cost.spot_instances.enabled ? this.cost.spot_instances.deployment : undefined;
    return {
      enabled: this.scaling.enabled,
      role: this.role,
      dryRun: this.scaling.dry_run || !this.applier,
      target: { namespace: this.namespace(), deployment: k.deployment, ...(spot ? { spotDeployment: spot } : {}) },
      ...(this.lastForecast ? { forecast: this.lastForecast } : {}),
      ...(this.history.length > 0 ? { decision: this.history[this.history.length - 1] } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      history: [...this.history],
    };
  }
}
