// InferenceFlow live status page: polls /v1/stats and redraws tiles, two canvas charts and the
// capability panels. Plain browser JavaScript, no build step, nothing fetched from elsewhere.
// Sections whose capability has not reported yet say "not enabled".
'use strict';

(function dashboard() {
  const config = JSON.parse(document.getElementById('dashboard-config').textContent || '{}');
  const POLL_MS = Math.max(250, Number(config.pollMs) || 1000);
  const KEY_STORE = 'inferenceflow.dashboard.key';
  const $ = (id) => document.getElementById(id);
  let apiKey = window.sessionStorage.getItem(KEY_STORE) || '';
  let failures = 0;

  if (config.grafanaUrl) {
    const link = $('grafana-link');
    link.href = config.grafanaUrl;
    link.hidden = false;
  }

  $('auth').addEventListener('submit', (event) => {
    event.preventDefault();
    apiKey = $('auth-key').value.trim();
    window.sessionStorage.setItem(KEY_STORE, apiKey);
    poll();
  });

  // ---- formatting ----------------------------------------------------------------------------
  const num = (v, digits = 0) => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–');
  const ms = (v) => (v >= 100 ? num(v, 0) : num(v, 1));
  const pct = (v) => `${num(v * 100, 1)} %`;
  const usd = (v) => (v === 0 ? '$0' : v < 0.01 ? `$${v.toPrecision(2)}` : `$${num(v, 2)}`);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const kv = (rows) => `<div class="kv">${rows.map(([k, v]) => `<span class="k">${esc(k)}</span><span>${v}</span>`).join('')}</div>`;
  const off = (what) => `<div class="off">${esc(what)} not enabled</div>`;
  const bar = (ratio) => `<div class="bar"><span style="width:${Math.max(0, Math.min(100, ratio * 100)).toFixed(1)}%"></span></div>`;

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  // ---- charts ----------------------------------------------------------------------------------
  /** Draws series on a canvas: `bars` as columns, `lines` as polylines, sharing one y axis. */
  function drawChart(canvas, series, { bars = [], lines = [], present }) {
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(width * dpr)) canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const pad = { l: 44, r: 8, t: 8, b: 20 };
    const w = width - pad.l - pad.r;
    const h = height - pad.t - pad.b;
    const keys = [...bars.map((b) => b.key), ...lines.map((l) => l.key)];
    let max = 0;
    for (const p of series) for (const k of keys) max = Math.max(max, p[k] || 0);
    max = niceMax(max);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#8b98a8';
    g.strokeStyle = '#263241';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + h - (h * i) / 4;
      g.beginPath();
      g.moveTo(pad.l, Math.round(y) + 0.5);
      g.lineTo(pad.l + w, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(shortNum((max * i) / 4), 4, y + 4);
    }
    const n = series.length;
    if (n === 0) return;
    const step = w / n;
    const x = (i) => pad.l + i * step;
    const y = (v) => pad.t + h - (h * (v || 0)) / max;
    for (const b of bars) {
      g.fillStyle = b.color;
      series.forEach((p, i) => {
        const v = p[b.key] || 0;
        if (v > 0) g.fillRect(x(i) + 0.5, y(v), Math.max(1, step - 1), pad.t + h - y(v));
      });
    }
    // Lines break where `present` says a second had no data (no traffic is not zero latency).
    for (const l of lines) {
      g.strokeStyle = l.color;
      g.fillStyle = l.color;
      g.lineWidth = 2;
      let open = false;
      g.beginPath();
      series.forEach((p, i) => {
        if (present && !present(p)) {
          open = false;
          return;
        }
        const px = x(i) + step / 2;
        if (open) g.lineTo(px, y(p[l.key]));
        else g.moveTo(px, y(p[l.key]));
        open = true;
      });
      g.stroke();
      series.forEach((p, i) => {
        const lonely = (!present || present(p)) && present && !present(series[i - 1] || {}) && !present(series[i + 1] || {});
        if (lonely) g.fillRect(x(i) + step / 2 - 2, y(p[l.key]) - 2, 4, 4);
      });
    }
    g.fillStyle = '#8b98a8';
    g.fillText(`-${n}s`, pad.l, height - 4);
    g.fillText('now', pad.l + w - 22, height - 4);
    let lx = pad.l + 60;
    for (const item of [...bars, ...lines]) {
      g.fillStyle = item.color;
      g.fillRect(lx, height - 12, 10, 8);
      g.fillStyle = '#8b98a8';
      g.fillText(item.label, lx + 14, height - 4);
      lx += g.measureText(item.label).width + 32;
    }
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function shortNum(v) {
    if (v >= 1e6) return `${num(v / 1e6, 1)}M`;
    if (v >= 1e3) return `${num(v / 1e3, 1)}k`;
    return v >= 10 || v === 0 ? num(v, 0) : num(v, 1);
  }

  // ---- rendering -------------------------------------------------------------------------------
  function render(s) {
    setText('version', s.gateway ? `v${s.gateway.version}` : '');
    setText('window', `window ${s.window_s}s`);
    setText('k-rps', num(s.requests.per_second, 2));
    setText('k-total', `${num(s.requests.total)} requests`);
    setText('k-p50', ms(s.latency_ms.p50));
    setText('k-p95', ms(s.latency_ms.p95));
    setText('k-p99', ms(s.latency_ms.p99));
    setText('k-err', pct(s.requests.error_rate));
    setText('k-err-sub', `${num(s.requests.errors_5xx)} 5xx · ${num(s.requests.errors_4xx)} 4xx`);
    setText('k-cache', s.cache.enabled ? pct(s.cache.hit_rate) : 'n/a');
    setText('k-cache-sub', s.cache.enabled ? `${num(s.cache.lookups)} lookups` : 'cache not enabled');
    setText('k-cpr', usd(s.cost.per_request_usd));
    setText('k-spend', `${usd(s.cost.total_usd)} in window`);
    setText('k-queue', s.queue.enabled ? num(s.queue.depth) : 'n/a');
    setText('k-queue-sub', s.queue.enabled ? 'waiting' : 'queue not enabled');

    $('alerts').innerHTML = (s.alerts || [])
      .map((a) => {
        const fmt = a.name === 'error_rate' ? pct : a.name === 'p95_latency' ? (v) => `${ms(v)} ms` : (v) => num(v);
        return `<span class="alert ${a.firing ? 'firing' : 'ok'}">${a.firing ? '▲' : '●'} ${esc(a.name.replace('_', ' '))}: ${esc(fmt(a.value))} (limit ${esc(fmt(a.threshold))})</span>`;
      })
      .join('');

    drawChart($('chart-traffic'), s.series, {
      bars: [
        { key: 'requests', label: 'requests', color: '#4fa3ff' },
        { key: 'errors', label: '5xx', color: '#f05d5e' },
      ],
    });
    drawChart($('chart-latency'), s.series, {
      lines: [
        { key: 'p50_ms', label: 'p50', color: '#3fb97b' },
        { key: 'p95_ms', label: 'p95', color: '#f2b84b' },
      ],
      present: (p) => p.requests > 0,
    });

    const providers = new Map(s.providers.map((p) => [p.provider, p]));
    for (const name of (s.gateway && s.gateway.providers) || []) if (!providers.has(name)) providers.set(name, null);
    $('providers').querySelector('tbody').innerHTML =
      [...providers]
        .map(([name, p]) =>
          p
            ? `<tr><td>${esc(name)}</td><td>${num(p.calls)}</td><td>${pct(p.error_rate)}</td><td>${ms(p.latency_ms.p50)}</td><td>${ms(p.latency_ms.p95)}</td><td>${p.ttft_ms.count ? ms(p.ttft_ms.p50) : '–'}</td><td>${usd(p.cost_usd)}</td></tr>`
            : `<tr><td>${esc(name)}</td><td>0</td><td>–</td><td>–</td><td>–</td><td>–</td><td>–</td></tr>`,
        )
        .join('') || '<tr><td colspan="7" class="off">no provider calls in the window</td></tr>';

    $('breakers').innerHTML = s.breakers.enabled
      ? s.breakers.deployments.length
        ? kv(s.breakers.deployments.map((b) => [b.deployment, `<span class="badge ${esc(b.state)}">${esc(b.state.replace('_', '-'))}</span> <span class="muted">opened ${num(b.opened_total)}×</span>`]))
        : '<div class="off">all closed</div>'
      : off('circuit breakers');

    $('cache').innerHTML = s.cache.enabled
      ? kv([
          ['hit rate', pct(s.cache.hit_rate)],
          ['exact hits', num(s.cache.hits.exact)],
          ['semantic hits', num(s.cache.hits.semantic)],
          ['lookups', num(s.cache.lookups)],
          ['saved', usd(s.cache.saved_usd)],
        ])
      : off('cache');

    $('limits').innerHTML = s.limits.enabled
      ? kv([['rate-limited (429)', num(s.limits.rate_limited)], ...Object.entries(s.limits.by_limit).map(([k, v]) => [`· ${k}`, num(v)])])
      : off('limits');

    const maxCost = Math.max(0, ...s.providers.map((p) => p.cost_usd));
    $('spend').innerHTML =
      kv([
        ['total', usd(s.cost.total_usd)],
        ['per request', usd(s.cost.per_request_usd)],
        ['input tokens', num(s.cost.input_tokens)],
        ['output tokens', num(s.cost.output_tokens)],
      ]) +
      s.providers
        .filter((p) => p.cost_usd > 0)
        .map((p) => `<div class="row"><div class="name"><span>${esc(p.provider)}</span><span>${usd(p.cost_usd)}</span></div>${bar(maxCost ? p.cost_usd / maxCost : 0)}</div>`)
        .join('');

    $('routing').innerHTML = s.routing.enabled
      ? kv([
          ['retries', num(s.routing.retries)],
          ['fallbacks', num(s.routing.fallbacks)],
          ['hedges launched', num(s.routing.hedges.launched)],
          ['hedges won', num(s.routing.hedges.won)],
        ])
      : off('retries, fallbacks and hedging');

    $('mesh').innerHTML = s.mesh.enabled
      ? `<div class="muted">${num(s.mesh.healthy)} of ${num(s.mesh.nodes.length)} healthy</div>` +
        s.mesh.nodes
          .map((n) => `<div class="row"><div class="name"><span>${esc(n.node)}</span><span class="badge ${esc(n.state)}">${esc(n.state)}</span></div>${bar(n.health)}</div>`)
          .join('')
      : off('mesh');

    const g = s.gpu;
    $('gpu').innerHTML = g.enabled
      ? kv([
          ['allocations', num(g.allocations)],
          ['failed', num(g.failures)],
          ['alloc p50 / p95', `${ms(g.allocation_latency_ms.p50)} / ${ms(g.allocation_latency_ms.p95)} ms`],
          ['active', num(g.active_allocations)],
        ]) +
        Object.entries(g.utilization)
          .map(([d, u]) => `<div class="row"><div class="name"><span>${esc(d)}</span><span>${pct(u)}</span></div>${bar(u)}</div>`)
          .join('')
      : off('GPU pool');

    // With `serve --workers N` the figures cover every worker; say so, and which did not answer in time.
    const w = s.workers;
    const cover = w ? ` (${w.answered + w.stale} workers${w.stale ? `, ${w.stale} from their last report` : ''}${w.missing ? `, ${w.missing} missing` : ''})` : '';
    setText('updated', new Date(s.generated_at).toLocaleTimeString() + cover);
  }

  // ---- polling ---------------------------------------------------------------------------------
  let timer;
  async function poll() {
    clearTimeout(timer);
    try {
      const res = await fetch('/v1/stats', { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, cache: 'no-store' });
      // 401: no key, or an unknown one; 403: the key may not read the stats from here (an IP
      // allowlist). Either way only another key helps, so the form comes back.
      if (res.status === 401 || res.status === 403) {
        $('auth').hidden = false;
        setText('auth-error', res.status === 403 ? 'that key may not read the stats from this address; try another' : apiKey ? 'that key was refused' : '');
        setStatus('pill-down', res.status === 403 ? 'key not allowed here' : 'needs a key');
        return; // wait for the form
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      $('auth').hidden = true;
      render(await res.json());
      failures = 0;
      setStatus('pill-live', 'live');
    } catch (err) {
      failures++;
      setStatus('pill-down', `offline (${err.message})`);
    }
    timer = setTimeout(poll, failures ? Math.min(10_000, POLL_MS * 2 ** failures) : POLL_MS);
  }

  function setStatus(cls, text) {
    const el = $('status');
    el.className = `pill ${cls}`;
    el.textContent = text;
  }

  poll();
})();
