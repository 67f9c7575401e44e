// `inferenceflow worker`: where its backend is, from the flags or the environment.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { meshSettings, workerProviderConfig } from './mesh.js';

describe('inferenceflow worker backend', () => {
  it('calls the Ollama that OLLAMA_HOST names when --base-url is not given, read as the gateway reads it', () => {
    expect(workerProviderConfig({ backend: 'ollama' }, { OLLAMA_HOST: 'ollama:11434' }).base_url).toBe('http://ollama:11434');
    expect(workerProviderConfig({ backend: 'ollama' }, { OLLAMA_HOST: '0.0.0.0' }).base_url).toBe('http://127.0.0.1:11434');
    // --base-url wins; unset or empty (docker-compose's ${OLLAMA_HOST:-}), the adapter's default.
    expect(workerProviderConfig({ backend: 'ollama', baseUrl: 'http://gpu:11434' }, { OLLAMA_HOST: 'ollama:11434' }).base_url).toBe('http://gpu:11434');
    expect(workerProviderConfig({ backend: 'ollama' }, { OLLAMA_HOST: '' }).base_url).toBeUndefined();
    // Another backend does not take Ollama's address.
    expect(workerProviderConfig({ backend: 'openai', apiKey: 'k' }, { OLLAMA_HOST: 'ollama:11434' })).toEqual({ type: 'openai', api_key: 'k' });
  });
});

describe('mesh routers and workers reading the gateway\'s config file', () => {
  it('start without the keys of providers they never call', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mesh-config-'));
    try {
      const file = join(dir, 'gateway.yaml');
      await writeFile(file, 'providers:\n  claude: { type: anthropic, api_key_env: ANTHROPIC_API_KEY }\nclusters:\n  mesh: { key_prefix: "test:mesh:" }\n');
      const settings = await meshSettings({ config: file }, { REDIS_URL: 'redis://127.0.0.1:6379' });
      expect(settings.redisUrl).toBe('redis://127.0.0.1:6379');
      expect(settings.mesh.key_prefix).toBe('test:mesh:');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
