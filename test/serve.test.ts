// `inferenceflow serve` start-up rules: no auth means loopback only; with a token it may bind wider.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildConfig } from '../src/config/load.js';
import { startServer } from '../src/cli/serve.js';
import { createLogger } from '../src/telemetry/logger.js';

// Its own embedded database file, so parallel test files never share ./data.
const database = { pglite_path: join(mkdtempSync(join(tmpdir(), 'if-serve-')), 'db.pglite') };

describe('serve', () => {
  it('refuses a non-loopback address without authentication', async () => {
    await expect(startServer({ loaded: buildConfig({ database }, {}), host: '0.0.0.0', port: 0, logger: createLogger('silent') })).rejects.toThrow(/without authentication/);
  });

  it('binds a non-loopback address once a token is configured', async () => {
    const server = await startServer({ loaded: buildConfig({ database }, { TRUTHGPT_API_TOKEN: 'a-long-token-1' }), host: '0.0.0.0', port: 0, logger: createLogger('silent') });
    try {
      expect(server.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    } finally {
      await server.close();
    }
  });
});
