// Structured JSON logs (pino). Secrets never reach a log line: credentials in headers, keys, tokens,
// passwords and webhook secrets are redacted by key name at any depth of a logged object (plain
// objects and arrays), on top of pino's path redaction for the usual places.
import { destination as pinoDestination, pino, symbols as pinoSymbols, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'api_key',
  '*.api_key',
  'secret',
  '*.secret',
  'token',
  '*.token',
];

export const CENSOR = '[redacted]';

/** Key names whose values are credentials, wherever they appear. `tokens` (counts) is not one. */
const SECRET_KEY =
  /^(authorization|proxy-authorization|x-api-key|api[-_]?key|apikey|x-goog-api-key|secret|client_secret|[\w-]*[-_]secret|secret[-_][\w-]*|password|passwd|token|access_token|refresh_token|id_token|bearer|cookie|set-cookie|signature|webhook-signature|x-signature|private_key)$/i;

const MAX_DEPTH = 8;

/** A copy of `value` with credential-named keys censored at any depth (Errors and class instances kept as they are). */
export function scrubSecrets(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubSecrets(v, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const scrubbed = SECRET_KEY.test(k) && v !== undefined && v !== null ? CENSOR : scrubSecrets(v, depth + 1);
    if (scrubbed !== v) {
      out ??= { ...(value as Record<string, unknown>) };
      out[k] = scrubbed;
    }
  }
  return out ?? value;
}

/** The line format every logger here writes: service, ISO time, level as a word. */
const LINE_FORMAT = {
  base: { service: 'inferenceflow' },
  timestamp: pino.stdTimeFunctions.isoTime,
  levelLabel: (label: string) => ({ level: label }),
};

export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: LINE_FORMAT.base,
      timestamp: LINE_FORMAT.timestamp,
      redact: { paths: REDACT_PATHS, censor: CENSOR },
      formatters: {
        level: LINE_FORMAT.levelLabel,
        log: (obj) => scrubSecrets(obj) as Record<string, unknown>,
      },
    },
    (destination as DestinationStream | undefined) ?? bufferedStdout(),
  );
}

/**
 * Asynchronous, buffered stdout (sonic-boom): a request line must not block the event loop on a slow
 * pipe, and lines go out in writes of up to 4 KiB rather than one write per line (a write per request
 * cost ~20 µs of CPU under load). A quarter-second timer flushes a partial buffer, so a quiet gateway's
 * lines still appear at once; pino flushes synchronously on exit, so only a SIGKILL can lose the last
 * quarter second of lines.
 */
function bufferedStdout(): DestinationStream {
  const dest = pinoDestination({ dest: 1, sync: false, minLength: 4096 });
  setInterval(() => {
    if (!(dest as unknown as { destroyed?: boolean }).destroyed) dest.flush();
  }, 250).unref();
  return dest;
}

/**
 * The logger for the one line each request gets: same stream, level and line format as `log`, but
 * without the redaction passes. Those clone every logged object (about 20 KB of garbage per request,
 * a quarter of the gateway's allocation), and the access line is built by the server from fixed
 * fields (ids, names, numbers) that hold no credentials. Anything else goes to `log`.
 */
export function createAccessLogger(log: Logger): Logger {
  const stream = (log as unknown as Record<symbol, DestinationStream>)[pinoSymbols.streamSym];
  return pino(
    {
      level: log.level,
      base: LINE_FORMAT.base,
      timestamp: LINE_FORMAT.timestamp,
      formatters: { level: LINE_FORMAT.levelLabel },
    },
    stream,
  );
}

export type { Logger };
