// `GET /debug/process`: this process's health as a soak test watches it — resident memory, heap,
// event-loop delay percentiles and open file descriptors. The event-loop histogram starts on the
// first call (nothing runs until someone asks) and `?reset=true` starts a new measuring window.
import { readdir } from 'node:fs/promises';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import type { FastifyPluginAsync } from 'fastify';

const NS_PER_MS = 1e6;

export const processStatsRoutes: FastifyPluginAsync = async (app) => {
  let histogram: IntervalHistogram | undefined;
  let windowStart = 0;

  app.addHook('onClose', async () => histogram?.disable());

  app.get<{ Querystring: { reset?: string } }>('/debug/process', async (request) => {
    if (!histogram) {
      histogram = monitorEventLoopDelay({ resolution: 10 });
      histogram.enable();
      windowStart = performance.now();
    }
    const h = histogram;
    const mem = process.memoryUsage();
    const resources = process.getActiveResourcesInfo();
    const byType: Record<string, number> = {};
    for (const r of resources) byType[r] = (byType[r] ?? 0) + 1;
    const body = {
      pid: process.pid,
      uptime_s: Math.round(process.uptime()),
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      heap_total_bytes: mem.heapTotal,
      external_bytes: mem.external,
      array_buffers_bytes: mem.arrayBuffers,
      // Used bytes per V8 heap space (new_space, old_space, large_object_space…): which one grows.
      heap_spaces: Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_used_size])),
      event_loop_delay_ms: {
        window_s: Math.round((performance.now() - windowStart) / 100) / 10,
        samples: h.count,
        p50: h.count ? h.percentile(50) / NS_PER_MS : 0,
        p99: h.count ? h.percentile(99) / NS_PER_MS : 0,
        max: h.count ? h.max / NS_PER_MS : 0,
        mean: h.count ? h.mean / NS_PER_MS : 0,
      },
      // Linux: every descriptor this process holds (sockets, files, pipes); null elsewhere.
      open_fds: await readdir('/proc/self/fd').then(
        (entries) => entries.length,
        () => null,
      ),
      active_resources: byType,
    };
    if (request.query.reset === 'true' || request.query.reset === '1') {
      h.reset();
      windowStart = performance.now();
    }
    return body;
  });
};
