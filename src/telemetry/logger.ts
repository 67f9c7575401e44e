// Structured JSON logs (pino). Secrets never reach a log line: credentials in headers, keys and
// webhook secrets are redacted by path wherever they appear.
import { destination as pinoDestination, pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

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

export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'inferenceflow' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    // Asynchronous stdout (sonic-boom): a request line must not block the event loop on a slow
    // pipe. pino flushes it on exit.
    (destination as DestinationStream | undefined) ?? pinoDestination({ dest: 1, sync: false }),
  );
}

export type { Logger };
