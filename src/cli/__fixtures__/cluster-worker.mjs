// A stand-in cluster worker for src/cli/cluster.test.ts. FIXTURE_MODE:
//   listen: answer with this pid on port 0 (shared), exit 0 on SIGTERM after a short drain;
//           GET /heap answers with its node flags
//   no-listen: exit 3 at once, before listening (a bad config)
//   crash: listen, then exit 1 shortly after (a crashing worker)
import { createServer } from 'node:http';

const mode = process.env.FIXTURE_MODE ?? 'listen';
if (mode === 'no-listen') process.exit(3);

import { getHeapStatistics } from 'node:v8';

// `/heap`: the flags and young-generation size this worker was started with.
const server = createServer((req, res) =>
  res.end(req.url === '/heap' ? JSON.stringify({ execArgv: process.execArgv, heap: getHeapStatistics() }) : String(process.pid)),
);
server.listen(0, '127.0.0.1', () => {
  if (mode === 'crash') setTimeout(() => process.exit(1), 50);
});
process.on('SIGTERM', () => {
  server.close(() => setTimeout(() => process.exit(0), 20));
});
