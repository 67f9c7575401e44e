// Holt-Winters on a generated week of diurnal traffic with noise: the one-hour-ahead forecast must stay
// within 15 % MAPE, and must beat the naive "same as now" forecast the autoscaler would otherwise use.
import { describe, expect, it } from 'vitest';
import { forecast, mape } from './forecasting.js';
import { diurnalWeek } from './traffic-fixture.js';

const BUCKET_S = 300;
const SEASON = 86_400 / BUCKET_S; // 288 buckets a day
const HORIZON = 3_600 / BUCKET_S; // one hour = 12 buckets

describe('forecast (Holt-Winters additive, daily season)', () => {
  const week = diurnalWeek({ days: 7, bucketS: BUCKET_S, noise: 0.08, seed: 42 });

  it('forecasts the next hour within 15 % MAPE over the last day of a noisy week, and beats naive', () => {
    const actual: number[] = [];
    const predicted: number[] = [];
    const naive: number[] = [];
    // Every hour of day 7, forecast from everything before it.
    for (let origin = 6 * SEASON; origin + HORIZON <= week.length; origin += HORIZON) {
      const history = week.slice(0, origin);
      const f = forecast(history, SEASON, HORIZON);
      expect(f.method).toBe('holt-winters');
      actual.push(...week.slice(origin, origin + HORIZON));
      predicted.push(...f.values);
      naive.push(...new Array<number>(HORIZON).fill(history[history.length - 1] as number));
    }
    expect(actual).toHaveLength(SEASON);
    const error = mape(actual, predicted);
    expect(error).toBeLessThanOrEqual(0.15);
    expect(error).toBeLessThan(mape(actual, naive));
  });

  it('follows the daily shape: the forecast rises before the evening peak', () => {
    // History ends at 16:00 of day 6; the next hour's true rate climbs.
    const end = 5 * SEASON + (16 * 3600) / BUCKET_S;
    const f = forecast(week.slice(0, end), SEASON, HORIZON);
    const first = f.values[0] as number;
    const last = f.values[HORIZON - 1] as number;
    expect(last).toBeGreaterThan(first);
  });

  it('falls back to a flat smoothed level with less than two days of history, and to zeros with none', () => {
    const short = forecast([10, 12, 11, 13], SEASON, 3);
    expect(short.method).toBe('exponential-smoothing');
    expect(new Set(short.values).size).toBe(1);
    expect(short.values[0]).toBeGreaterThan(10);
    expect(short.values[0]).toBeLessThan(13);
    expect(forecast([], SEASON, 2)).toEqual({ method: 'none', values: [0, 0] });
  });

  it('never forecasts negative load', () => {
    const falling = Array.from({ length: 2 * 24 }, (_, i) => Math.max(0, 100 - i * 4));
    expect(Math.min(...forecast(falling, 24, 24).values)).toBeGreaterThanOrEqual(0);
  });
});

describe('mape', () => {
  it('is the mean absolute relative error, ignoring zero actuals', () => {
    expect(mape([100, 200, 0], [110, 180, 5])).toBeCloseTo(0.1, 12);
  });
});
