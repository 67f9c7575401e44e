import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTokenAuthenticator } from '../server/auth.js';
import { metricsAuthorizer } from '../telemetry/metrics-server.js';
import { buildConfig, ConfigError, loadConfig, ollamaHostUrl } from './load.js';

describe('configuration', () => {
  it('falls back to the simulator when nothing is configured', () => {
    const { config, simulatorDefault, passthroughProvider } = buildConfig({}, {});
    expect(simulatorDefault).toBe(true);
    expect(passthroughProvider).toBe('simulator');
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080 });
  });

  it('reads a YAML file named by INFERENCEFLOW_CONFIG or the seed alias TRUTHGPT_CONFIG', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'if-config-'));
    const file = join(dir, 'c.yaml');
    await writeFile(
      file,
      `server: { port: 9001 }
providers:
  my-openai: { type: openai, base_url: "http://127.0.0.1:1/v1", api_key_env: MY_KEY }
models:
  - name: chat
    deployments:
      - { provider: my-openai, model: gpt-4o-mini, price: { input: 0.15, output: 0.6 } }
`,
    );
    for (const name of ['INFERENCEFLOW_CONFIG', 'TRUTHGPT_CONFIG']) {
      const { config, simulatorDefault } = await loadConfig({ env: { [name]: file, MY_KEY: 'k-1' } });
      expect(config.server.port).toBe(9001);
      expect(config.providers['my-openai']?.api_key).toBe('k-1');
      // Unset: the catalog gives the deployment its provider's timeout_ms, else 600 s.
      expect(config.models[0]?.deployments[0]?.timeout_ms).toBeUndefined();
      expect(simulatorDefault).toBe(false);
    }
    // INFERENCEFLOW_CONFIG set empty (docker-compose's ${INFERENCEFLOW_CONFIG:-}) is unset: the alias applies.
    const { config } = await loadConfig({ env: { INFERENCEFLOW_CONFIG: '', TRUTHGPT_CONFIG: file, MY_KEY: 'k-1' } });
    expect(config.server.port).toBe(9001);
  });

  it('lets environment variables override the file', () => {
    const { config } = buildConfig({ server: { port: 1 } }, { PORT: '7070', HOST: '0.0.0.0', LOG_LEVEL: 'DEBUG', TRUTHGPT_API_TOKEN: 'token-123456' });
    expect(config.server).toMatchObject({ port: 7070, host: '0.0.0.0' });
    expect(config.logging.level).toBe('debug');
    expect(config.auth.tokens).toEqual(['token-123456']);
  });

  it('trims tokens from the environment and the file, as the key a client presents is trimmed', async () => {
    const { config } = buildConfig(
      { auth: { tokens: [' file-token-1234\n'], admin_token: 'admin-token-0123456789\n' } },
      { TRUTHGPT_API_TOKEN: 'token-123456\n', INFERENCEFLOW_API_TOKENS: ' listed-123456 ,\tother-123456\n' },
    );
    expect(config.auth.tokens).toEqual(['file-token-1234', 'token-123456', 'listed-123456', 'other-123456']);
    expect(config.auth.admin_token).toBe('admin-token-0123456789');
    const auth = createTokenAuthenticator(config.auth.tokens);
    await expect(auth.authenticate({ headers: { authorization: 'Bearer token-123456' } })).resolves.toMatchObject({ kind: 'token' });
    // Only whitespace is no token at all; the length rule applies to what is left.
    expect(buildConfig({}, { TRUTHGPT_API_TOKEN: '\n' }).config.auth.tokens).toEqual([]);
    expect(() => buildConfig({ auth: { tokens: ['short   \n'] } }, {})).toThrow(/at least 8 characters/);
  });

  it('trims METRICS_TOKEN (a secret file ends in a newline), so the token a scraper presents matches', () => {
    const { token } = buildConfig({}, { METRICS_TOKEN: 'metrics-token-1234\n' }).config.monitoring.metrics;
    expect(token).toBe('metrics-token-1234');
    expect(metricsAuthorizer(token)({ authorization: 'Bearer metrics-token-1234' })).toBe(true);
  });

  it('registers providers from the usual variables, the first one serving unclaimed models', () => {
    const { config, passthroughProvider } = buildConfig({}, { OPENAI_BASE_URL: 'http://vllm:8000/v1', ANTHROPIC_API_KEY: 'a', OLLAMA_HOST: '127.0.0.1:11434' });
    expect(config.providers.openai).toMatchObject({ type: 'openai', base_url: 'http://vllm:8000/v1' });
    expect(config.providers.anthropic).toMatchObject({ type: 'anthropic', api_key: 'a' });
    expect(config.providers.ollama?.base_url).toBe('http://127.0.0.1:11434');
    expect(passthroughProvider).toBe('openai');
  });

  it("registers no provider from a key variable a file provider reads (api_key_env): nothing unlisted is passed through on that key", () => {
    const file = {
      providers: { 'my-openai': { type: 'openai', base_url: 'https://api.openai.com/v1', api_key_env: 'OPENAI_API_KEY' }, claude: { type: 'anthropic', api_key_env: 'ANTHROPIC_API_KEY' } },
      models: [{ name: 'chat', deployments: [{ provider: 'my-openai', model: 'gpt-4o-mini' }] }],
    };
    const { config, passthroughProvider } = buildConfig(file, { OPENAI_API_KEY: 'sk-operator', ANTHROPIC_API_KEY: 'sk-ant' });
    expect(Object.keys(config.providers).sort()).toEqual(['claude', 'my-openai']);
    expect(config.providers['my-openai']?.api_key).toBe('sk-operator');
    expect(passthroughProvider).toBeUndefined();
    // A variable no file provider reads still registers its provider next to the file's.
    const other = buildConfig(file, { OPENAI_API_KEY: 'sk-operator', ANTHROPIC_API_KEY: 'sk-ant', COHERE_API_KEY: 'co' });
    expect(other.passthroughProvider).toBe('cohere');
    // OPENAI_BASE_URL asks for the environment's server by name: it gets the key too (vLLM --api-key, OpenRouter).
    const asked = buildConfig(file, { OPENAI_API_KEY: 'sk-operator', ANTHROPIC_API_KEY: 'sk-ant', OPENAI_BASE_URL: 'http://vllm:8000/v1' });
    expect(asked.passthroughProvider).toBe('openai');
    expect(asked.config.providers.openai).toMatchObject({ base_url: 'http://vllm:8000/v1', api_key: 'sk-operator' });
  });

  it('refuses a provider whose api_key_env names an unset or empty variable where the API needs a key, and warns for a self-hosted one', () => {
    const provider = (p: Record<string, unknown>, env: Record<string, string> = {}) => buildConfig({ providers: { p: { api_key_env: 'MY_KEY', ...p } } }, env);
    for (const p of [{ type: 'anthropic' }, { type: 'google' }, { type: 'cohere' }, { type: 'openai' }, { type: 'openai', base_url: 'https://api.openai.com/v1' }]) {
      expect(() => provider(p), JSON.stringify(p)).toThrow(/providers\.p\.api_key_env: MY_KEY is not set/);
      expect(() => provider(p, { MY_KEY: '' }), JSON.stringify(p)).toThrow(ConfigError);
      expect(provider(p, { MY_KEY: 'k' }).config.providers.p?.api_key).toBe('k');
    }
    const vllm = provider({ type: 'openai', base_url: 'http://127.0.0.1:8000/v1' });
    expect(vllm.config.providers.p?.api_key).toBeUndefined();
    expect(vllm.warnings).toEqual([expect.stringMatching(/providers\.p\.api_key_env: MY_KEY is not set/)]);
    expect(provider({ type: 'ollama', base_url: 'http://127.0.0.1:11434' }).warnings).toHaveLength(1);
    // A key written in the file wins; the variable is not needed then.
    expect(provider({ type: 'anthropic', api_key: 'in-file' }).warnings).toEqual([]);
  });

  it('reads OLLAMA_HOST as Ollama does: no scheme is http, no port 11434, an empty or wildcard host loopback', () => {
    const ollama = (host: string) => buildConfig({}, { OLLAMA_HOST: host }).config.providers.ollama?.base_url;
    expect(ollama('127.0.0.1')).toBe('http://127.0.0.1:11434');
    expect(ollama('localhost')).toBe('http://localhost:11434');
    expect(ollama('0.0.0.0')).toBe('http://127.0.0.1:11434');
    expect(ollama(':11434')).toBe('http://127.0.0.1:11434');
    expect(ollama('0.0.0.0:8081')).toBe('http://127.0.0.1:8081');
    expect(ollama('ollama:11434')).toBe('http://ollama:11434');
    expect(ollama('[::1]:11434')).toBe('http://[::1]:11434');
    expect(ollama('http://gpu-box:11434')).toBe('http://gpu-box:11434');
    expect(ollama('https://ollama.example.com/')).toBe('https://ollama.example.com');
    expect(ollamaHostUrl('ollama')).toBe('http://ollama:11434');
    // Quoted, as docker-compose's list form (- OLLAMA_HOST="ollama:11434") passes it.
    expect(ollama('"ollama:11434"')).toBe('http://ollama:11434');
    expect(ollama("'0.0.0.0'")).toBe('http://127.0.0.1:11434');
    expect(() => ollama('ftp://x')).toThrow(/OLLAMA_HOST/);
  });

  it('reads INFERENCEFLOW_LOCAL_THREADS as the other variables: empty is unset, a non-number names the variable', () => {
    const threads = (env: Record<string, string>) => buildConfig({}, { INFERENCEFLOW_MODELS_DIR: '/models', ...env }).config.providers.local?.options?.threads;
    expect(threads({})).toBe(1);
    expect(threads({ INFERENCEFLOW_LOCAL_THREADS: '4' })).toBe(4);
    expect(threads({ INFERENCEFLOW_LOCAL_THREADS: '' })).toBe(1);
    expect(() => threads({ INFERENCEFLOW_LOCAL_THREADS: 'four' })).toThrow(/INFERENCEFLOW_LOCAL_THREADS: expected a whole number, got "four"/);
    expect(() => threads({ INFERENCEFLOW_LOCAL_THREADS: '0' })).toThrow(/INFERENCEFLOW_LOCAL_THREADS/);
  });

  it('refuses a blank or non-decimal value of a number variable instead of reading it as 0 or hex', () => {
    expect(buildConfig({}, { SIMILARITY_THRESHOLD: '0.9' }).config.cache.semantic.threshold).toBe(0.9);
    expect(buildConfig({}, { RATE_LIMIT_WINDOW: ' 30 ' }).config.rate_limiting.window_s).toBe(30);
    // Number(' ') is 0: a semantic threshold of 0 would make every lookup a hit.
    expect(() => buildConfig({}, { SIMILARITY_THRESHOLD: ' ' })).toThrow(/SIMILARITY_THRESHOLD: expected a number/);
    expect(() => buildConfig({}, { RATE_LIMIT_WINDOW: '0x10' })).toThrow(/RATE_LIMIT_WINDOW: expected a number/);
  });

  it('builds REDIS_URL from the seed form', () => {
    const { config } = buildConfig({}, { REDIS_HOST: 'cache', REDIS_PORT: '6380', REDIS_PASSWORD: 'p w' });
    expect(config.redis.url).toBe('redis://:p%20w@cache:6380');
    // What Kubernetes injects beside a Service named redis: its port is used, the host stays REDIS_HOST.
    expect(buildConfig({}, { REDIS_HOST: 'redis', REDIS_PORT: 'tcp://10.0.0.1:6380' }).config.redis.url).toBe('redis://redis:6380');
    expect(buildConfig({}, { REDIS_HOST: 'redis' }).config.redis.url).toBe('redis://redis:6379');
    // An IPv6 host is bracketed, or its colons would read as a port.
    expect(buildConfig({}, { REDIS_HOST: 'fd00::3' }).config.redis.url).toBe('redis://[fd00::3]:6379');
    expect(() => buildConfig({}, { REDIS_HOST: 'redis', REDIS_PORT: 'six' })).toThrow(/REDIS_PORT: expected a port number/);
    expect(() => buildConfig({}, { REDIS_HOST: 'redis', REDIS_PORT: '70000' })).toThrow(/REDIS_PORT/);
  });

  it('refuses a provider base_url that is not http(s), as OPENAI_BASE_URL=localhost:8000/v1 (scheme "localhost:")', () => {
    expect(() => buildConfig({}, { OPENAI_BASE_URL: 'localhost:8000/v1' })).toThrow(/providers\.openai\.base_url: expected an http:\/\/ or https:\/\/ URL/);
    expect(() => buildConfig({ providers: { v: { type: 'openai', base_url: 'ftp://host/v1' } } }, {})).toThrow(/providers\.v\.base_url/);
    expect(buildConfig({}, { OPENAI_BASE_URL: 'http://localhost:8000/v1' }).config.providers.openai?.base_url).toBe('http://localhost:8000/v1');
  });

  it('reads YAML merge keys (<<: *defaults) in the config file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'if-config-'));
    const file = join(dir, 'merge.yaml');
    await writeFile(
      file,
      `providers:
  a: &sim { type: simulator, timeout_ms: 5000 }
  b:
    <<: *sim
    timeout_ms: 9000
  c: { <<: *sim }
`,
    );
    const { config } = await loadConfig({ file, env: {} });
    expect(config.providers.b).toMatchObject({ type: 'simulator', timeout_ms: 9000 });
    expect(config.providers.c).toMatchObject({ type: 'simulator', timeout_ms: 5000 });
  });

  it('names the path and what was expected when the file is wrong', () => {
    expect(() => buildConfig({ server: { port: 'eighty' } }, {})).toThrow(/server\.port: .*number/);
    expect(() => buildConfig({ models: [{ name: 'x', deployments: [{ provider: 'ghost', model: 'm' }] }] }, {})).toThrow(/unknown provider "ghost"/);
    expect(() => buildConfig({ sever: {} }, {})).toThrow(ConfigError);
    expect(() => buildConfig({}, { PORT: 'abc' })).toThrow(/PORT: expected a whole number/);
    // A value from the environment names its variable, not only the file it overrides.
    expect(() => buildConfig({ server: { port: 1 } }, { PORT: '70000' }, 'c.yaml')).toThrow(/in c\.yaml:\n {2}- server\.port: .* \(set by PORT\)/);
    expect(() => buildConfig({}, { OPENAI_BASE_URL: 'localhost:8000/v1' })).toThrow(/providers\.openai\.base_url: .* \(set by OPENAI_BASE_URL\)/);
    expect(() => buildConfig({ server: { port: 70000 } }, {})).toThrow(/server\.port: [^\n(]*$/);
  });

  it('refuses two model groups of one name instead of keeping only the last', () => {
    const providers = { a: { type: 'simulator' }, b: { type: 'simulator' } };
    const models = [
      { name: 'chat', deployments: [{ provider: 'a', model: 'm1' }] },
      { name: 'other', deployments: [{ provider: 'a', model: 'm2' }] },
      { name: 'chat', deployments: [{ provider: 'b', model: 'm3' }] },
    ];
    expect(() => buildConfig({ providers, models }, {})).toThrow(/models\[2\]\.name: "chat" is already the name of models\[0\]/);
  });
});
