// The live status page's files (plain HTML, JS and CSS under public/, no build step), read once at
// start-up. Looked up beside this module: under src/ (tsx, tests), or in dist/, where `npm run build`
// copies them (the image has no src/); a dist/ built by tsc alone falls back to the source tree.
import { readFile } from 'node:fs/promises';

export interface DashboardAsset {
  body: string;
  contentType: string;
}

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};

const CANDIDATE_DIRS = [new URL('./public/', import.meta.url), new URL('../../src/dashboard/public/', import.meta.url)];

export interface DashboardSettings {
  grafanaUrl?: string;
  /** Poll interval of /v1/stats, ms. */
  pollMs?: number;
}

/** Reads the page's files; the HTML gets the settings as an inline JSON block (not executed). */
export async function loadDashboardAssets(settings: DashboardSettings): Promise<Map<string, DashboardAsset>> {
  for (const dir of CANDIDATE_DIRS) {
    try {
      const out = new Map<string, DashboardAsset>();
      for (const [name, contentType] of Object.entries(FILES)) {
        out.set(name, { body: await readFile(new URL(name, dir), 'utf8'), contentType });
      }
      const json = JSON.stringify({ grafanaUrl: settings.grafanaUrl ?? null, pollMs: settings.pollMs ?? 1000 }).replace(/</g, '\\u003c');
      const html = out.get('index.html') as DashboardAsset;
      // A replacer function: a string replacement would expand `$&`, `$'` or `$$` in the Grafana URL.
      html.body = html.body.replace('__DASHBOARD_CONFIG__', () => json);
      return out;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new Error(`dashboard files not found (looked in ${CANDIDATE_DIRS.map((d) => d.pathname).join(', ')})`);
}
