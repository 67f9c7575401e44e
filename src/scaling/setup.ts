// The scaling stage's options from the `inference:` config, made once at start-up: loads the
// estimator's labelled prototypes (off the request path) and decides per model whether passes can
// share one call with `n` (the upstream samples n choices natively) or must be separate calls.
import { readFile } from 'node:fs/promises';
import type { ProviderAdapter, ProviderType } from '../providers/types.js';
import type { ModelCatalog } from '../routing/catalog.js';
import type { InferenceConfig, TestTimeScalingConfig } from './config.js';
import { DifficultyEstimator, parseLabelledExamples } from './estimator.js';
import { fixedTemperatureModel } from './fixed-temperature.js';
import type { ScalingStageOptions } from './stage.js';

/** Upstreams that sample `n` choices in one call; the others would fan out, so passes go separately. */
const NATIVE_N: ReadonlySet<ProviderType> = new Set(['openai', 'simulator', 'google']);
const takesN = (p: Pick<ProviderAdapter, 'type' | 'fansOutChoices'>): boolean => NATIVE_N.has(p.type) && p.fansOutChoices !== true;

export const BUNDLED_EXAMPLES = new URL('../../config/difficulty-examples.jsonl', import.meta.url);

export async function loadEstimator(config: TestTimeScalingConfig): Promise<DifficultyEstimator | undefined> {
  if (!config.estimator.enabled) return undefined;
  const text = await readFile(config.estimator.examples_file ?? BUNDLED_EXAMPLES, 'utf8');
  return new DifficultyEstimator(parseLabelledExamples(text), { prototypeWeight: config.estimator.prototype_weight });
}

/**
 * The scaling stage's options: the stage and admission (which reserves what a plan may use) plan with
 * the same ones. `catalog` is read lazily (the gateway builds it after the stages).
 */
export async function scalingOptions(config: InferenceConfig, catalog: () => ModelCatalog | undefined): Promise<ScalingStageOptions> {
  const tts = config.test_time_scaling;
  const estimator = await loadEstimator(tts);
  return {
    config: tts,
    retries: config.retries,
    estimator,
    supportsN(model) {
      try {
        const group = catalog()?.resolve(model);
        return !!group && group.deployments.length > 0 && group.deployments.every((d) => takesN(d.provider));
      } catch {
        return false;
      }
    },
    fixedTemperature(model) {
      // The public name, or the upstream model of any deployment that may answer it (fallbacks too).
      if (fixedTemperatureModel(model)) return true;
      try {
        return (catalog()?.reachable(model) ?? []).some((g) => g.deployments.some((d) => fixedTemperatureModel(d.model)));
      } catch {
        return false;
      }
    },
    promptPerChoice(model) {
      // A group that may answer in the model's place (a fallback) and fans `n` out into n calls.
      try {
        return (catalog()?.reachable(model) ?? []).some((g) => g.deployments.some((d) => !takesN(d.provider)));
      } catch {
        return false;
      }
    },
  };
}

