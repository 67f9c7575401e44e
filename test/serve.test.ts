// `inferenceflow serve` start-up rules: no auth means loopback only; with a token it may bind wider.
import { describe, expect, it } from 'vitest';
import { buildConfig } from '../src/config/load.js';
import { startServer } from '../src/cli/serve.js';
import { createLogger } from '../src/telemetry/logger.js';

describe('serve', () => {
  it('refuses a non-loopback address without authentication', async () => {
    await expect(startServer({ loaded: buildConfig({}, {}), host: '0.0.0.0', port: 0, logger: createLogger('silent') })).rejects.toThrow(/without authentication/);
  });

  it('binds a non-loopback address once a token is configured', async () => {
    const server = await startServer({ loaded: buildConfig({}, { TRUTHGPT_API_TOKEN: 'a-long-token-1' }), host: '0.0.0.0', port: 0, logger: createLogger('silent') });
    try {
      expect(server.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    } finally {
      await server.close();
    }
  });
});
