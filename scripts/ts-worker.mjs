// Runs a TypeScript worker module from source (tests, `npm run dev`): registers tsx in this worker
// thread, then imports the module named by the last argument. Built workers (dist/) start directly;
// see startModuleWorker in src/gateway/worker-rpc.ts.
import { register } from 'tsx/esm/api';

register();
await import(process.argv[process.argv.length - 1]);
