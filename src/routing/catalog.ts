// Public model names -> groups of deployments (a provider instance plus its model name, price,
// timeout and limits). Model names no group claims go to the passthrough provider when there is one
// (the first provider registered from the environment, or the simulator), else a 404 lists the names.
import type { HedgingConfig, ModelGroupConfig, RetryConfig, SemanticRoutingConfig } from '../config/schema.js';
import type { ProviderAdapter, ProviderSettings } from '../providers/types.js';
import { priceFor, type Price } from '../providers/pricing.js';
import { GatewayError } from '../server/errors.js';

export interface Deployment {
  /** Stable id for headers, metrics and breaker keys. */
  id: string;
  group: string;
  providerName: string;
  provider: ProviderAdapter;
  /** The upstream's model name. */
  model: string;
  weight: number;
  priority: number;
  price: Price;
  /**
   * Time allowed for one attempt (streams: to the first chunk), capped by the request's deadline: the
   * deployment's `timeout_ms`, else its provider's, else DEFAULT_TIMEOUT_MS.
   */
  timeoutMs: number;
  contextWindow?: number;
  maxConcurrency?: number;
}

export type Strategy = ModelGroupConfig['strategy'];

export interface ModelGroup {
  name: string;
  strategy: Strategy;
  deployments: Deployment[];
  fallbacks: string[];
  /** True for a group made up on the fly for an unclaimed model name. */
  passthrough: boolean;
  description?: string;
  contextWindowFallbacks: string[];
  contentPolicyFallbacks: string[];
  hedging?: HedgingConfig;
  semantic?: SemanticRoutingConfig;
  retry?: Partial<RetryConfig>;
  queueSize?: number;
}

export interface ModelInfo {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/**
 * The attempt timeout of a deployment whose entry and provider set none (passthrough ones too): OpenAI's own
 * SDK default, 10 minutes, since a long answer or a reasoning model's takes minutes and a cut attempt
 * is paid for anyway. In practice the request's deadline (`routing.deadline_ms`) ends it sooner; a
 * stream, once its first chunk is in, is bounded by `routing.stream_idle_timeout_ms` instead.
 */
export const DEFAULT_TIMEOUT_MS = 600_000;

/** The groups a group's own failures may pass a request on to: `fallbacks`, then the context-window and content-policy ones. */
export function fallbackGroupNames(g: ModelGroup): string[] {
  return [...g.fallbacks, ...g.contextWindowFallbacks, ...g.contentPolicyFallbacks];
}

/** A semantic group's route targets and its default (deployment ids of the group, or other groups). */
export function semanticTargets(g: ModelGroup): string[] {
  return g.semantic ? [...g.semantic.routes.map((r) => r.target), ...(g.semantic.default ? [g.semantic.default] : [])] : [];
}

export class ModelCatalog {
  private readonly groups = new Map<string, ModelGroup>();
  private readonly passthroughCache = new Map<string, ModelGroup>();
  /** `reachable` of each configured group, once asked. */
  private readonly reach = new Map<string, ModelGroup[]>();
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(
    groups: readonly ModelGroupConfig[],
    private readonly providers: ReadonlyMap<string, ProviderAdapter>,
    private readonly passthroughProvider?: string,
    /** The `providers:` section: a provider's `timeout_ms` is the default of its deployments. */
    private readonly providerSettings: Readonly<Record<string, Pick<ProviderSettings, 'timeout_ms'>>> = {},
  ) {
    for (const g of groups) {
      this.groups.set(g.name, {
        name: g.name,
        strategy: g.strategy,
        fallbacks: g.fallbacks,
        passthrough: false,
        description: g.description,
        contextWindowFallbacks: g.context_window_fallbacks,
        contentPolicyFallbacks: g.content_policy_fallbacks,
        hedging: g.hedging,
        semantic: g.semantic,
        retry: g.retry,
        queueSize: g.queue_size,
        deployments: g.deployments.map((d) => ({
          id: d.id ?? `${d.provider}/${d.model}`,
          group: g.name,
          providerName: d.provider,
          provider: this.provider(d.provider),
          model: d.model,
          weight: d.weight,
          priority: d.priority,
          price: priceFor(d.model, d.price),
          timeoutMs: d.timeout_ms ?? this.providerTimeout(d.provider),
          contextWindow: d.context_window,
          maxConcurrency: d.max_concurrency,
        })),
      });
    }
  }

  /** The group for a public model name; throws model_not_found listing what exists. */
  resolve(model: string): ModelGroup {
    const group = this.groups.get(model);
    if (group) return group;
    if (this.passthroughProvider) {
      let g = this.passthroughCache.get(model);
      if (!g) {
        g = {
          name: model,
          strategy: 'fallback',
          fallbacks: [],
          passthrough: true,
          contextWindowFallbacks: [],
          contentPolicyFallbacks: [],
          deployments: [
            {
              id: `${this.passthroughProvider}/${model}`,
              group: model,
              providerName: this.passthroughProvider,
              provider: this.provider(this.passthroughProvider),
              model,
              weight: 1,
              priority: 0,
              price: priceFor(model),
              timeoutMs: this.providerTimeout(this.passthroughProvider),
            },
          ],
        };
        // Bounded: clients can send any string; keep the most recent few hundred.
        if (this.passthroughCache.size >= 512) this.passthroughCache.clear();
        this.passthroughCache.set(model, g);
      }
      return g;
    }
    const names = [...this.groups.keys()];
    throw new GatewayError('model_not_found', {
      param: 'model',
      message: `The model "${model}" does not exist. Available models: ${names.join(', ') || '(none configured)'}.`,
    });
  }

  /**
   * The groups that may answer a request for `model`: its own first, then every group routing may
   * pass it on to — `fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks` and semantic
   * targets that are groups — and theirs in turn. A call that fails on its own group is answered by
   * one of these, at that group's price; admission reserves for the dearest. Throws like `resolve`.
   */
  reachable(model: string): ModelGroup[] {
    // Admission asks for every call of every request; configured groups never change, so their walk
    // is kept (a passthrough name, which clients choose, is its own group alone).
    const known = this.reach.get(model);
    if (known) return known;
    const out: ModelGroup[] = [];
    const seen = new Set<string>();
    const visit = (g: ModelGroup) => {
      if (seen.has(g.name)) return;
      seen.add(g.name);
      out.push(g);
      for (const name of [...fallbackGroupNames(g), ...semanticTargets(g)]) {
        const next = this.groups.get(name);
        if (next) visit(next);
      }
    };
    visit(this.resolve(model));
    if (this.groups.has(model)) this.reach.set(model, out);
    return out;
  }

  /** Only configured groups (no passthrough). */
  get(model: string): ModelGroup | undefined {
    return this.groups.get(model);
  }

  groupNames(): string[] {
    return [...this.groups.keys()];
  }

  allDeployments(): Deployment[] {
    return [...this.groups.values()].flatMap((g) => g.deployments);
  }

  /** The OpenAI /v1/models list: configured groups, then what the passthrough provider offers. */
  list(passthroughModels: readonly string[] = []): ModelInfo[] {
    const seen = new Set<string>();
    const out: ModelInfo[] = [];
    for (const g of this.groups.values()) {
      seen.add(g.name);
      out.push({ id: g.name, object: 'model', created: this.created, owned_by: 'inferenceflow' });
    }
    for (const m of passthroughModels) {
      if (seen.has(m)) continue;
      seen.add(m);
      out.push({ id: m, object: 'model', created: this.created, owned_by: this.passthroughProvider ?? 'upstream' });
    }
    return out;
  }

  get passthrough(): ProviderAdapter | undefined {
    return this.passthroughProvider ? this.providers.get(this.passthroughProvider) : undefined;
  }

  /** A deployment's attempt timeout when it sets none: its provider's `timeout_ms`, else the default. */
  private providerTimeout(name: string): number {
    return this.providerSettings[name]?.timeout_ms ?? DEFAULT_TIMEOUT_MS;
  }

  private provider(name: string): ProviderAdapter {
    const p = this.providers.get(name);
    if (!p) throw new Error(`unknown provider ${name}`);
    return p;
  }
}
