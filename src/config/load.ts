// Loads the configuration: YAML file (if any) -> environment overrides -> zod validation.
// Also registers providers from the usual environment variables and falls back to the built-in
// simulator when nothing is configured, so `npm start` always serves.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { configSchema, type Config } from './schema.js';
import { ENV_VARS } from './env.js';

export interface LoadedConfig {
  config: Config;
  /** Provider that serves model names no group claims (first env-registered one, or the simulator). */
  passthroughProvider?: string;
  /** True when nothing was configured and the simulator stands in. */
  simulatorDefault: boolean;
  /** Where the file came from, if any. */
  file?: string;
  /** Settings that load but look wrong (`serve` logs them at start-up). */
  warnings?: string[];
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/**
 * `providerKeys`: what an unset `api_key_env` variable of a provider that needs a key is — a start-up
 * error (`require`, for the processes that call providers) or a warning (`warn`: a mesh router or
 * worker reads the gateway's file for `clusters.mesh` and `redis`, and calls none of its providers).
 */
export interface LoadOptions {
  providerKeys?: 'require' | 'warn';
}

export async function loadConfig(opts: { file?: string; env?: Env } & LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  // Set empty is unset, as for every variable: docker-compose passes INFERENCEFLOW_CONFIG through as
  // '' when the shell has none, which must not hide TRUTHGPT_CONFIG.
  const file = opts.file ?? (env.INFERENCEFLOW_CONFIG?.trim() || undefined) ?? (env.TRUTHGPT_CONFIG?.trim() || undefined);
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    try {
      // Merge keys (`<<: *defaults`) as YAML 1.1 has them: the usual way to share provider settings.
      raw = (parseYaml(text, { merge: true }) as Record<string, unknown> | null) ?? {};
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      throw new ConfigError(`config file ${file} must hold a mapping at the top level`);
    }
  }
  return buildConfig(raw, env, file, opts);
}

/** Applies environment overrides to a raw (unvalidated) config object and validates it. */
export function buildConfig(raw: Record<string, unknown>, env: Env, file?: string, options: LoadOptions = {}): LoadedConfig {
  const merged = structuredClone(raw);
  // Which variable set which config path, so an error names the variable and not only the file.
  const origins = new Map<string, string>();
  applyEnv(merged, env, origins);
  const envProviders = registerEnvProviders(merged, env, origins);

  const result = configSchema.safeParse(merged);
  if (!result.success) throw new ConfigError(formatZodError(result.error, file, origins));
  const config = result.data;

  const warnings: string[] = [];
  for (const [name, p] of Object.entries(config.providers)) {
    if (p.api_key_env && !p.api_key) {
      p.api_key = env[p.api_key_env] || undefined;
      // Loading without the key would fail every request upstream with a 401, long after start-up.
      if (!p.api_key) {
        const problem = `providers.${name}.api_key_env: ${p.api_key_env} is not set`;
        if (needsKey(p) && options.providerKeys !== 'warn') throw new ConfigError(problem);
        // A self-hosted server (Ollama, vLLM, …) may well take no key.
        warnings.push(`${problem}; calling ${p.base_url ?? p.type} without a key`);
      }
    }
    if (p.type !== 'simulator' && p.type !== 'local' && p.type !== 'mesh' && p.type !== 'ollama' && !p.base_url && p.type === 'openai' && !p.api_key) {
      throw new ConfigError(`providers.${name}: an openai provider needs base_url or an API key`);
    }
  }
  // The catalog keys groups by name: a second group of one name would replace the first unseen.
  const groupIndex = new Map<string, number>();
  for (const [gi, group] of config.models.entries()) {
    const first = groupIndex.get(group.name);
    if (first !== undefined) throw new ConfigError(`models[${gi}].name: "${group.name}" is already the name of models[${first}]`);
    groupIndex.set(group.name, gi);
  }
  for (const group of config.models) {
    for (const [i, d] of group.deployments.entries()) {
      if (!config.providers[d.provider]) {
        throw new ConfigError(
          `models[${group.name}].deployments[${i}].provider: unknown provider "${d.provider}" (known: ${Object.keys(config.providers).join(', ') || 'none'})`,
        );
      }
    }
  }

  let simulatorDefault = false;
  let passthroughProvider = envProviders[0];
  if (Object.keys(config.providers).length === 0) {
    config.providers.simulator = { type: 'simulator' };
    passthroughProvider = 'simulator';
    simulatorDefault = true;
  }
  return { config, passthroughProvider, simulatorDefault, file, warnings };
}

/** Provider types whose hosted APIs refuse a call without a key (openai: only OpenAI's own API). */
function needsKey(p: { type: string; base_url?: string }): boolean {
  if (p.type === 'anthropic' || p.type === 'google' || p.type === 'cohere') return true;
  return p.type === 'openai' && (!p.base_url || new URL(p.base_url).hostname === 'api.openai.com');
}

/** `true`/`false`, a hop count, or a comma-separated list of addresses and CIDRs. */
function trustProxyFromEnv(value: string): boolean | number | string[] {
  if (/^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
  if (/^\d+$/.test(value)) return Number(value);
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function applyEnv(target: Record<string, unknown>, env: Env, origins: Map<string, string>): void {
  for (const v of ENV_VARS) {
    if (!v.path) continue;
    const value = env[v.name];
    if (value === undefined || value === '') continue;
    setPath(target, v.path, convert(v.name, v.kind, value));
    origins.set(v.path, v.name);
  }
  // OpenTelemetry's generic variables (the specific ones are rows of ENV_VARS).
  if (!env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT && env.OTEL_EXPORTER_OTLP_ENDPOINT) {
    setPath(target, 'monitoring.tracing.otlp_endpoint', `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`);
    origins.set('monitoring.tracing.otlp_endpoint', 'OTEL_EXPORTER_OTLP_ENDPOINT');
  }
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') setPath(target, 'monitoring.tracing.enabled', false);
  const trust = env.INFERENCEFLOW_TRUST_PROXY?.trim();
  if (trust) setPath(target, 'server.trust_proxy', trustProxyFromEnv(trust));
  const level = env.LOG_LEVEL;
  if (level) setPath(target, 'logging.level', level.toLowerCase());
  if (!env.REDIS_URL && env.REDIS_HOST) {
    const auth = env.REDIS_PASSWORD ? `:${encodeURIComponent(env.REDIS_PASSWORD)}@` : '';
    const host = env.REDIS_HOST.trim();
    // An IPv6 address goes in brackets, or its colons read as the port's.
    setPath(target, 'redis.url', `redis://${auth}${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${redisPort(env.REDIS_PORT)}`);
  }
  if (!env.REDIS_URL && env.REDIS_CLUSTER_NODES) {
    // Redis Cluster: the same one URL setting, so every module that checks `redis.url` shares it.
    const auth = env.REDIS_PASSWORD ? `:${encodeURIComponent(env.REDIS_PASSWORD)}@` : '';
    const nodes = env.REDIS_CLUSTER_NODES.split(',').map((n) => n.trim()).filter(Boolean).join(',');
    setPath(target, 'redis.url', `redis+cluster://${auth}${nodes}`);
  }
  const tokens: string[] = [];
  // The schema trims auth.tokens like the key a client presents (a token read from a mounted secret
  // ends in a newline); an all-whitespace value sets no token at all.
  if (env.TRUTHGPT_API_TOKEN?.trim()) tokens.push(env.TRUTHGPT_API_TOKEN);
  if (env.INFERENCEFLOW_API_TOKENS) tokens.push(...env.INFERENCEFLOW_API_TOKENS.split(',').map((t) => t.trim()).filter(Boolean));
  if (tokens.length > 0) {
    const auth = (target.auth ??= {}) as Record<string, unknown>;
    const existing = Array.isArray(auth.tokens) ? (auth.tokens as unknown[]) : [];
    auth.tokens = [...existing, ...tokens];
  }
}

/**
 * Adds providers named after the usual variables unless the file already defines that name, or a
 * file provider already reads the key variable through `api_key_env`.
 */
function registerEnvProviders(target: Record<string, unknown>, env: Env, origins: Map<string, string>): string[] {
  const providers = (target.providers ??= {}) as Record<string, unknown>;
  // Such a variable is that provider's key, not a request for another: a second provider made from
  // it would become the passthrough and forward every model name the file does not list upstream.
  const claimed = new Set(Object.values(providers).map((p) => (p && typeof p === 'object' ? (p as { api_key_env?: unknown }).api_key_env : undefined)));
  const key = (name: string) => (claimed.has(name) ? undefined : env[name]);
  const added: string[] = [];
  const add = (name: string, entry: Record<string, unknown>, baseUrlVar?: string) => {
    if (providers[name]) return;
    providers[name] = entry;
    added.push(name);
    if (baseUrlVar && env[baseUrlVar]) origins.set(`providers.${name}.base_url`, baseUrlVar);
  };
  // OPENAI_BASE_URL asks for that server by itself, so it gets the key whoever else reads it.
  const openaiKey = env.OPENAI_BASE_URL ? env.OPENAI_API_KEY : key('OPENAI_API_KEY');
  if (openaiKey || env.OPENAI_BASE_URL) {
    add('openai', {
      type: 'openai',
      base_url: env.OPENAI_BASE_URL || 'https://api.openai.com/v1',
      ...(openaiKey ? { api_key: openaiKey } : {}),
    }, 'OPENAI_BASE_URL');
  }
  const anthropicKey = key('ANTHROPIC_API_KEY');
  if (anthropicKey) {
    add('anthropic', {
      type: 'anthropic',
      base_url: env.ANTHROPIC_BASE_URL || 'https://api.anthropic.com',
      api_key: anthropicKey,
    }, 'ANTHROPIC_BASE_URL');
  }
  const googleKey = key('GOOGLE_API_KEY');
  if (googleKey) add('google', { type: 'google', api_key: googleKey });
  const cohereKey = key('COHERE_API_KEY');
  if (cohereKey) add('cohere', { type: 'cohere', api_key: cohereKey });
  if (env.OLLAMA_HOST?.trim()) add('ollama', { type: 'ollama', base_url: ollamaHostUrl(env.OLLAMA_HOST) });
  if (env.INFERENCEFLOW_MODELS_DIR) {
    add('local', {
      type: 'local',
      options: {
        models_dir: env.INFERENCEFLOW_MODELS_DIR,
        threads: localThreads(env.INFERENCEFLOW_LOCAL_THREADS),
      },
    });
  }
  return added;
}

/**
 * OLLAMA_HOST read as Ollama itself reads it: no scheme means http and port 11434 (with a scheme the
 * scheme's port, as Ollama does), an empty host is 127.0.0.1, and a wildcard bind address (`0.0.0.0`,
 * `::`, what `ollama serve` is often given) is called on loopback. `127.0.0.1`, `localhost:11434`,
 * `:11434` and `https://ollama.example.com` all work.
 */
export function ollamaHostUrl(value: string): string {
  // Quotes around it are dropped, as Ollama drops them (docker-compose's list form keeps them).
  const text = value.trim().replace(/^["']+|["']+$/g, '');
  const withScheme = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(text);
  const scheme = withScheme ? (withScheme[1] as string).toLowerCase() : 'http';
  const rest = withScheme ? (withScheme[2] as string) : text;
  const slash = rest.indexOf('/');
  const hostPort = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash).replace(/\/+$/, '');
  let host: string;
  let port: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(\d*))?$/.exec(hostPort);
  if (bracketed) [host, port] = [bracketed[1] as string, bracketed[2]];
  else if (hostPort.split(':').length > 2) host = hostPort; // a bare IPv6 address
  else [host, port] = hostPort.split(':') as [string, string | undefined];
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  if (!port) port = withScheme ? undefined : '11434';
  const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}${port ? `:${port}` : ''}${path}`;
  if ((scheme !== 'http' && scheme !== 'https') || !URL.canParse(url)) throw new ConfigError(`OLLAMA_HOST: expected host[:port] or http(s)://host[:port], got "${value}"`);
  return url;
}

/**
 * REDIS_PORT: a port number, or the `tcp://<cluster-ip>:<port>` Kubernetes injects into every pod of
 * a namespace with a Service named `redis` (its port is taken; the host stays REDIS_HOST).
 */
function redisPort(value: string | undefined): string {
  const text = value?.trim();
  if (!text) return '6379';
  const port = /^\d+$/.test(text) ? text : /^tcp:\/\/[^/]+:(\d+)$/.exec(text)?.[1];
  if (port === undefined || Number(port) < 1 || Number(port) > 65535) throw new ConfigError(`REDIS_PORT: expected a port number (1-65535), got "${value}"`);
  return port;
}

/** INFERENCEFLOW_LOCAL_THREADS: unset or empty (as every variable) is the default, 1. */
function localThreads(value: string | undefined): number {
  if (value === undefined || value === '') return 1;
  const n = convert('INFERENCEFLOW_LOCAL_THREADS', 'int', value) as number;
  if (n < 1) throw new ConfigError(`INFERENCEFLOW_LOCAL_THREADS: expected at least 1, got "${value}"`);
  return n;
}

function convert(name: string, kind: string, value: string): unknown {
  switch (kind) {
    case 'int': {
      if (!/^-?\d+$/.test(value.trim())) throw new ConfigError(`${name}: expected a whole number, got "${value}"`);
      return Number(value);
    }
    case 'number': {
      // Decimal only: Number() reads a blank value as 0 and accepts hex, binary and Infinity.
      if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(value.trim())) throw new ConfigError(`${name}: expected a number, got "${value}"`);
      return Number(value);
    }
    case 'bool': {
      const v = value.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new ConfigError(`${name}: expected true or false, got "${value}"`);
    }
    case 'list':
      return value.split(',').map((s) => s.trim()).filter(Boolean);
    default:
      return value;
  }
}

export function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null || typeof next !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1] as string] = value;
}

export function formatZodError(error: z.ZodError, file?: string, origins?: ReadonlyMap<string, string>): string {
  const where = file ? ` in ${file}` : '';
  const lines = error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.map(String).join('.') : '(top level)';
    const variable = [...(origins ?? [])].find(([p]) => path === p || path.startsWith(`${p}.`))?.[1];
    return `  - ${path}: ${issue.message}${variable ? ` (set by ${variable})` : ''}`;
  });
  return `invalid configuration${where}:\n${lines.join('\n')}`;
}
