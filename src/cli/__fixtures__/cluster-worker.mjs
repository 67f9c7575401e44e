// A stand-in cluster worker for src/cli/cluster.test.ts. FIXTURE_MODE:
//   listen: answer with this pid on port 0 (shared), exit 0 on SIGTERM after a short drain;
//           GET /heap answers with its node flags; GET /metrics answers with the cluster's metrics
//           (asked of the primary, as src/telemetry/cluster-metrics.ts does), in which this worker
//           reports `fixture_requests_total` (the requests it answered) and `nodejs_fixture_pid`
//   no-listen: exit 3 at once, before listening (a bad config)
//   crash: listen, then exit 1 shortly after (a crashing worker)
import { createServer } from 'node:http';

const mode = process.env.FIXTURE_MODE ?? 'listen';
if (mode === 'no-listen') process.exit(3);

import { getHeapStatistics } from 'node:v8';

let served = 0;
const scrapes = new Map();
let seq = 0;
process.on('message', (m) => {
  if (m?.type === 'inferenceflow:metrics-collect') {
    process.send({
      type: 'inferenceflow:metrics-report',
      id: m.id,
      metrics: [
        { name: 'fixture_requests_total', help: 'requests answered', type: 'counter', aggregator: 'sum', values: [{ labels: {}, value: served }] },
        { name: 'nodejs_fixture_pid', help: 'pid', type: 'gauge', aggregator: 'sum', values: [{ labels: {}, value: process.pid }] },
      ],
    });
  } else if (m?.type === 'inferenceflow:metrics-answer') {
    scrapes.get(m.id)?.(m.text ?? `error: ${m.error}`);
    scrapes.delete(m.id);
  }
});

// `/heap`: the flags and young-generation size this worker was started with.
const server = createServer((req, res) => {
  if (req.url === '/metrics') {
    const id = ++seq;
    scrapes.set(id, (text) => res.end(text));
    process.send({ type: 'inferenceflow:metrics-request', id });
    return;
  }
  served++;
  res.end(req.url === '/heap' ? JSON.stringify({ execArgv: process.execArgv, heap: getHeapStatistics() }) : String(process.pid));
});
server.listen(0, '127.0.0.1', () => {
  if (mode === 'crash') setTimeout(() => process.exit(1), 50);
});
process.on('SIGTERM', () => {
  server.close(() => setTimeout(() => process.exit(0), 20));
});
