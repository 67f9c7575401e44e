// The semantic index's worker thread (started by threaded-index.ts): an IndexHost built from the
// settings in workerData, applying the cache's messages in the order they were posted.
import { parentPort, workerData } from 'node:worker_threads';
import { serveWorker } from '../gateway/worker-rpc.js';
import { IndexHost, postFailure, type IndexMessage, type IndexSettings } from './index-host.js';

const report = (err: unknown) => parentPort?.postMessage(postFailure(err));
const host = new IndexHost(workerData as IndexSettings, report);
serveWorker((m) => host.handle(m as unknown as IndexMessage), report);
