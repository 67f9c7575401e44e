import { describe, expect, it } from 'vitest';
import { loadDashboardAssets } from './assets.js';

describe('loadDashboardAssets', () => {
  it('puts a Grafana URL holding `$` sequences into the page as it is', async () => {
    const grafanaUrl = "https://grafana.example/d/abc?var-x=$$&var-y=$&var-z=$'&var-w=$`";
    const html = (await loadDashboardAssets({ grafanaUrl, pollMs: 500 })).get('index.html')?.body ?? '';
    const block = /<script id="dashboard-config" type="application\/json">([^<]*)<\/script>/.exec(html)?.[1];
    expect(JSON.parse(block ?? 'null')).toEqual({ grafanaUrl, pollMs: 500 });
  });
});
