// The embedded database's thread: started by sql.ts's openPglite, which sends 'open' first. The
// logic is pglite-host.ts's (tested in-thread; code in a worker thread escapes coverage).
import { serveWorker } from '../gateway/worker-rpc.js';
import { pgliteHandler } from './pglite-host.js';

serveWorker(pgliteHandler());
