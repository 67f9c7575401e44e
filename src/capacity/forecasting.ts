// Traffic forecasting for the autoscaler: additive Holt-Winters (level, trend, daily season) with
// its three smoothing factors chosen by a small grid search on one-step-ahead error. Written here
// because no maintained Holt-Winters package is among the dependencies; it is ~100 lines and tested
// against a generated week of diurnal traffic.

export interface HoltWintersParams {
  alpha: number;
  beta: number;
  gamma: number;
}

export interface Forecast {
  /** `holt-winters` with two full seasons of history; `exponential-smoothing` with less; `none` with none. */
  method: 'holt-winters' | 'exponential-smoothing' | 'none';
  values: number[];
  params?: HoltWintersParams;
  /** Root mean squared one-step error over the history, in the series' unit. */
  rmse?: number;
}

const ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7];
const BETAS = [0, 0.01, 0.05];
const GAMMAS = [0.05, 0.1, 0.2, 0.3, 0.5];

/**
 * Forecasts `horizon` steps after the end of `series` (evenly spaced, oldest first). `seasonLength`
 * is the number of steps in one season (288 five-minute buckets in a day).
 */
export function forecast(series: readonly number[], seasonLength: number, horizon: number, params?: HoltWintersParams): Forecast {
  if (series.length === 0) return { method: 'none', values: new Array<number>(horizon).fill(0) };
  if (series.length < 2 * seasonLength || seasonLength < 2) return smoothing(series, horizon);
  let best: { params: HoltWintersParams; sse: number } | undefined;
  const grid = params ? [params] : ALPHAS.flatMap((alpha) => BETAS.flatMap((beta) => GAMMAS.map((gamma) => ({ alpha, beta, gamma }))));
  for (const p of grid) {
    const sse = fit(series, seasonLength, p).sse;
    if (!best || sse < best.sse) best = { params: p, sse };
  }
  const chosen = best as { params: HoltWintersParams; sse: number };
  const state = fit(series, seasonLength, chosen.params);
  const values: number[] = [];
  const n = series.length;
  for (let h = 1; h <= horizon; h++) {
    const season = state.seasonal[(n - 1 + h) % seasonLength] as number;
    values.push(Math.max(0, state.level + h * state.trend + season));
  }
  return { method: 'holt-winters', values, params: chosen.params, rmse: Math.sqrt(chosen.sse / (n - seasonLength)) };
}

interface FitState {
  level: number;
  trend: number;
  /** Indexed by step % seasonLength. */
  seasonal: Float64Array;
  sse: number;
}

/** Runs the recursions over the series; the first season initialises level and seasonal indices. */
function fit(y: readonly number[], m: number, { alpha, beta, gamma }: HoltWintersParams): FitState {
  const mean = (from: number) => {
    let s = 0;
    for (let i = from; i < from + m; i++) s += y[i] as number;
    return s / m;
  };
  const first = mean(0);
  let level = first;
  let trend = (mean(m) - first) / m;
  const seasonal = new Float64Array(m);
  for (let i = 0; i < m; i++) seasonal[i] = (y[i] as number) - first;
  let sse = 0;
  for (let t = m; t < y.length; t++) {
    const value = y[t] as number;
    const k = t % m;
    const s = seasonal[k] as number;
    const predicted = level + trend + s;
    sse += (value - predicted) ** 2;
    const nextLevel = alpha * (value - s) + (1 - alpha) * (level + trend);
    trend = beta * (nextLevel - level) + (1 - beta) * trend;
    seasonal[k] = gamma * (value - nextLevel) + (1 - gamma) * s;
    level = nextLevel;
  }
  return { level, trend, seasonal, sse };
}

/** Too little history for a season: a flat forecast at the exponentially smoothed level. */
function smoothing(series: readonly number[], horizon: number): Forecast {
  const alpha = 0.3;
  let level = series[0] as number;
  for (const v of series.slice(1)) level = alpha * v + (1 - alpha) * level;
  return { method: 'exponential-smoothing', values: new Array<number>(horizon).fill(Math.max(0, level)) };
}

/** Mean absolute percentage error of forecasts against actuals, skipping actual zeros. */
export function mape(actual: readonly number[], predicted: readonly number[]): number {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as number;
    if (a === 0) continue;
    sum += Math.abs((a - (predicted[i] as number)) / a);
    n++;
  }
  return n === 0 ? 0 : sum / n;
}
