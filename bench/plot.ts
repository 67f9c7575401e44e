// Charts for bench/RESULTS.md from the benchmarks' JSON results: throughput against offered load,
// latency percentiles against offered load (bench/full-pipeline.ts --sweep) and the soak timeline
// (bench/soak.ts). SVG drawn by hand, rasterised to PNG by headless Chromium (playwright-core).
// Usage: tsx bench/plot.ts [--dir bench/results]   (writes <name>.svg and <name>.png there)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT } from './lib/processes.js';

export interface Series {
  name: string;
  color: string;
  dash?: string;
  points: Array<[number, number]>;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logY?: boolean;
  width?: number;
  height?: number;
  /** A dotted reference line y = x (offered = achieved). */
  diagonal?: boolean;
}

const COLORS = { direct: '#7f8c8d', proxy: '#2980b9', gateway: '#c0392b' } as Record<string, string>;
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** Round tick values: 1, 2, 5 × 10^k across [min, max]. */
function niceTicks(min: number, max: number, count = 6): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  if (Math.abs(v) >= 1000) return `${(v / 1000).toFixed(v % 1000 === 0 ? 0 : 1)}k`;
  if (Math.abs(v) < 1 && v !== 0) return v.toPrecision(2);
  return String(Number(v.toPrecision(4)));
}

export function lineChartSvg(spec: ChartSpec): string {
  const W = spec.width ?? 760;
  const H = spec.height ?? 440;
  const m = { top: 44, right: 170, bottom: 54, left: 70 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const pts = spec.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!spec.logY || y > 0));
  const xs = pts.map(([x]) => x);
  const ys = pts.map(([, y]) => y);
  const xMin = Math.min(0, ...xs);
  const xMax = Math.max(1, ...xs);
  let yMin = spec.logY ? Math.min(...ys) : 0;
  let yMax = Math.max(spec.logY ? 1 : 0, ...ys, ...(spec.diagonal ? xs : []));
  if (spec.logY) {
    yMin = 10 ** Math.floor(Math.log10(yMin || 0.1));
    yMax = 10 ** Math.ceil(Math.log10(yMax || 1));
  } else yMax = yMax * 1.05 || 1;
  const X = (x: number) => m.left + ((x - xMin) / (xMax - xMin || 1)) * pw;
  const Y = (y: number) =>
    spec.logY ? m.top + ph - ((Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin) || 1)) * ph : m.top + ph - ((y - yMin) / (yMax - yMin || 1)) * ph;

  const parts: string[] = [];
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${m.left}" y="26" font-size="16" font-weight="600">${esc(spec.title)}</text>`);
  // Grid and axes.
  const yTicks = spec.logY
    ? Array.from({ length: Math.round(Math.log10(yMax / yMin)) + 1 }, (_, i) => yMin * 10 ** i)
    : niceTicks(yMin, yMax);
  for (const t of yTicks) {
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${Y(t)}" y2="${Y(t)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 8}" y="${Y(t) + 4}" font-size="11" text-anchor="end">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(xMin, xMax)) {
    parts.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${m.top}" y2="${m.top + ph}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${X(t)}" y="${m.top + ph + 18}" font-size="11" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  parts.push(`<text x="${m.left + pw / 2}" y="${H - 12}" font-size="12" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  parts.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" font-size="12" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  if (spec.diagonal) {
    const d = Math.min(xMax, yMax);
    parts.push(`<line x1="${X(xMin)}" y1="${Y(Math.max(yMin, xMin))}" x2="${X(d)}" y2="${Y(d)}" stroke="#bbb" stroke-dasharray="2 4"/>`);
  }
  // Lines, dots, legend.
  spec.series.forEach((s, i) => {
    const ok = s.points.filter(([, y]) => Number.isFinite(y) && (!spec.logY || y > 0));
    if (ok.length > 0) {
      const d = ok.map(([x, y], j) => `${j ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
      for (const [x, y] of ok) parts.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
    }
    const ly = m.top + 8 + i * 18;
    parts.push(`<line x1="${m.left + pw + 14}" x2="${m.left + pw + 40}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    parts.push(`<text x="${m.left + pw + 46}" y="${ly + 4}" font-size="11">${esc(s.name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif">${parts.join('')}</svg>`;
}

interface SweepRow {
  target: string;
  offered: number;
  achieved: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}
interface SoakSample {
  t: number;
  rssBytes: number;
  fds: number;
  lagP99Ms: number;
  rps: number;
}

export function chartsFromResults(dir: string): Record<string, string> {
  const charts: Record<string, string> = {};
  const fp = join(dir, 'full-pipeline.json');
  if (existsSync(fp)) {
    const data = JSON.parse(readFileSync(fp, 'utf8')) as { machine: string; sweep: SweepRow[]; cachePhases?: unknown };
    // Results with per-phase cache counts time from the intended send time and count failures
    // (bench/lib/mixed-load.ts); older ones timed from the actual send, successes only.
    const current = data.cachePhases !== undefined;
    const targets = [...new Set(data.sweep.map((r) => r.target))];
    const rows = (t: string) => data.sweep.filter((r) => r.target === t).sort((a, b) => a.offered - b.offered);
    charts['throughput-vs-load'] = lineChartSvg({
      title: `Throughput against offered load (${data.machine.split(',')[0]})`,
      xLabel: 'offered load, requests/s',
      yLabel: 'achieved, requests/s',
      diagonal: true,
      series: targets.map((t) => ({ name: t, color: COLORS[t] ?? '#333', points: rows(t).map((r) => [r.offered, r.achieved]) })),
    });
    const dashes: Record<string, string | undefined> = { p50: undefined, p95: '6 3', p99: '2 3' };
    charts['latency-vs-load'] = lineChartSvg({
      title: `Latency percentiles against offered load${current ? ' (failures included)' : ''}`,
      xLabel: 'offered load, requests/s',
      yLabel: current ? 'intended send to last byte, ms (log)' : 'latency to last byte, ms (log)',
      logY: true,
      series: targets.flatMap((t) =>
        (['p50', 'p95', 'p99'] as const).map((p) => ({
          name: `${t} ${p}`,
          color: COLORS[t] ?? '#333',
          dash: dashes[p],
          points: rows(t).map((r): [number, number] => [r.offered, r[`${p}Ms`]]),
        })),
      ),
    });
  }
  const soak = join(dir, 'soak.json');
  if (existsSync(soak)) {
    const data = JSON.parse(readFileSync(soak, 'utf8')) as { rate: number; samples: SoakSample[]; warmupS: number; eventLoopDelay?: string };
    const s = data.samples;
    // Results from before /debug/process subtracted its 10 ms sampling interval hold the raw p99.
    const beyond = data.eventLoopDelay === 'beyond-resolution';
    charts['soak-memory'] = lineChartSvg({
      title: `Soak at ${data.rate} req/s: gateway memory and descriptors (warm-up ${data.warmupS} s)`,
      xLabel: 'time, s',
      yLabel: 'RSS, MiB  /  open descriptors',
      series: [
        { name: 'RSS, MiB', color: COLORS.gateway as string, points: s.map((x) => [x.t, x.rssBytes / 2 ** 20]) },
        { name: 'open descriptors', color: COLORS.proxy as string, dash: '6 3', points: s.map((x) => [x.t, x.fds]) },
      ],
    });
    charts['soak-latency'] = lineChartSvg({
      title: `Soak at ${data.rate} req/s: event-loop delay and throughput`,
      xLabel: 'time, s',
      yLabel: beyond ? 'loop delay p99 over the 10 ms tick, ms / req/s ÷ 100' : 'raw loop delay p99 (with 10 ms tick), ms / req/s ÷ 100',
      series: [
        { name: beyond ? 'loop delay p99, ms' : 'loop delay p99 (raw), ms', color: COLORS.gateway as string, points: s.map((x) => [x.t, x.lagP99Ms]) },
        { name: 'req/s ÷ 100', color: COLORS.direct as string, dash: '6 3', points: s.map((x) => [x.t, x.rps / 100]) },
      ],
    });
  }
  return charts;
}

/** Rasterises each SVG to PNG with headless Chromium. */
export async function renderPng(charts: Record<string, string>, dir: string): Promise<string[]> {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const written: string[] = [];
  try {
    const page = await browser.newPage({ deviceScaleFactor: 2 });
    for (const [name, svg] of Object.entries(charts)) {
      writeFileSync(join(dir, `${name}.svg`), svg);
      await page.setContent(`<!doctype html><html><body style="margin:0;background:#fff">${svg}</body></html>`);
      const path = join(dir, `${name}.png`);
      await page.locator('svg').screenshot({ path });
      written.push(path);
    }
  } finally {
    await browser.close();
  }
  return written;
}

async function main() {
  const args = process.argv.slice(2);
  const i = args.indexOf('--dir');
  const dir = i >= 0 ? (args[i + 1] as string) : join(ROOT, 'bench/results');
  const charts = chartsFromResults(dir);
  if (Object.keys(charts).length === 0) {
    console.error(`no results in ${dir}: run bench/full-pipeline.ts and bench/soak.ts first`);
    process.exit(1);
  }
  for (const p of await renderPng(charts, dir)) console.log(`wrote ${p}`);
}

if (process.argv[1]?.endsWith('plot.ts')) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
