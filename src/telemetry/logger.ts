// Structured JSON logs (pino). Secrets never reach a log line: credentials in headers, keys, tokens,
// passwords and webhook secrets are redacted by key name at any depth of a logged object (plain
// objects and arrays), on top of pino's path redaction for the usual places.
import { destination as pinoDestination, pino, stdSerializers, symbols as pinoSymbols, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

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

/**
 * pino's error serializer, without the command a Redis client attaches to its errors
 * (`err.command.args`): a cache write's arguments are the cached answer and its vector, and a Redis
 * incident would write one such line per request. The command's name stays.
 */
function serializeError(err: unknown): unknown {
  const out = stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  const command = out?.command as { name?: unknown } | undefined;
  if (command && typeof command === 'object') out.command = { name: command.name };
  return out;
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
      serializers: { err: serializeError },
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
 * pipe, and lines go out in writes of 12 KiB rather than one write per line (a write per request
 * cost ~20 µs of CPU under load; 12 KiB makes a third as many writes as 4 KiB did, a gain within this
 * VM's noise in bench/build-ab.ts; sonic-boom needs minLength below its 16 KiB maxWrite). A quarter-second timer flushes a partial buffer, so a quiet gateway's
 * lines still appear at once; pino flushes synchronously on exit, so only a SIGKILL can lose the last
 * quarter second of lines.
 */
function bufferedStdout(): DestinationStream {
  const dest = pinoDestination({ dest: 1, sync: false, minLength: 12288 });
  setInterval(() => {
    if (!(dest as unknown as { destroyed?: boolean }).destroyed) dest.flush();
  }, 250).unref();
  return dest;
}

/** The fields of a request's access line, in the order they are written. */
export interface AccessLine {
  reqId: string;
  method: string;
  url: string;
  route?: string;
  status: number;
  /** The error code of a 4xx or 5xx answer (docs/errors.md): which limit, which refusal. */
  code?: string;
  tenant?: string;
  model?: string;
  provider?: string;
  deployment?: string;
  cache?: string;
  costUsd?: number;
  tokens?: { input: number; output: number };
  attempts?: number;
  latencyMs: number;
  outcome: string;
}

// Typed as present; written as valid JSON whatever arrives at run time.
const str = (v: string) => (typeof v === 'string' ? JSON.stringify(v) : v === undefined ? 'null' : JSON.stringify(String(v)));
const num = (v: number) => (Number.isFinite(v) ? String(v) : 'null');
/** LINE_FORMAT.base as it appears inside a line: `"service":"inferenceflow"`. */
const BASE_FIELDS = JSON.stringify(LINE_FORMAT.base).slice(1, -1);
const needsMetadata = (stream: DestinationStream) => Boolean((stream as unknown as Record<symbol, unknown>)[pinoSymbols.needsMetadataGsym]);

/**
 * The one line each request gets: same stream, level and line format as `log` (level word, ISO time,
 * service, the fields, msg "request"), written as one string built from fixed fields. Through pino the
 * line cost ~8% of the gateway's CPU (its generic serialiser, an ISO timestamp per line, and before
 * that the redaction passes, which cloned every object); these fields are ids, names and numbers
 * that hold no credentials. Anything else goes to `log`.
 */
export class AccessLogger {
  private readonly stream: DestinationStream;
  private readonly viaPino: boolean;
  private isoMs = -1;
  private iso = '';

  constructor(private readonly log: Logger) {
    this.stream = (log as unknown as Record<symbol, DestinationStream>)[pinoSymbols.streamSym]!;
    // A stream that routes by each line's level (pino.multistream, from an embedder's logger) needs
    // the metadata pino attaches to every write: let pino write to it.
    this.viaPino = needsMetadata(this.stream);
  }

  request(line: AccessLine): void {
    if (!this.log.isLevelEnabled('info')) return;
    if (this.viaPino) {
      this.log.info(line, 'request');
      return;
    }
    // One ISO timestamp per millisecond, not per line.
    const now = Date.now();
    if (now !== this.isoMs) {
      this.isoMs = now;
      this.iso = new Date(now).toISOString();
    }
    let out = `{"level":"info","time":"${this.iso}",${BASE_FIELDS},"reqId":${str(line.reqId)},"method":${str(line.method)},"url":${str(line.url)}`;
    if (line.route !== undefined) out += `,"route":${str(line.route)}`;
    out += `,"status":${num(line.status)}`;
    if (line.code !== undefined) out += `,"code":${str(line.code)}`;
    if (line.tenant !== undefined) out += `,"tenant":${str(line.tenant)}`;
    if (line.model !== undefined) out += `,"model":${str(line.model)}`;
    if (line.provider !== undefined) out += `,"provider":${str(line.provider)}`;
    if (line.deployment !== undefined) out += `,"deployment":${str(line.deployment)}`;
    if (line.cache !== undefined) out += `,"cache":${str(line.cache)}`;
    if (line.costUsd !== undefined) out += `,"costUsd":${num(line.costUsd)}`;
    if (line.tokens !== undefined) out += `,"tokens":${JSON.stringify(line.tokens)}`;
    if (line.attempts !== undefined) out += `,"attempts":${num(line.attempts)}`;
    out += `,"latencyMs":${num(line.latencyMs)},"outcome":${str(line.outcome)},"msg":"request"}\n`;
    this.stream.write(out);
  }
}

export type { Logger };
