// Difficulty levels and what each buys (seed 000): passes, an output-token budget and a deadline over
// all passes. The defaults are the seed's table; the config file's `inference.levels` overrides them.

export enum DifficultyLevel {
  EASY = 'easy',
  MEDIUM = 'medium',
  HARD = 'hard',
  EXPERT = 'expert',
}

export const LEVELS: readonly DifficultyLevel[] = [DifficultyLevel.EASY, DifficultyLevel.MEDIUM, DifficultyLevel.HARD, DifficultyLevel.EXPERT];

export interface LevelBudget {
  /** Passes (independent samples) combined into one answer. */
  passes: number;
  /** Output tokens per pass when the client sets no max_tokens. */
  max_tokens: number;
  /** Deadline over all passes together, ms. */
  timeout_ms: number;
}

export const DEFAULT_LEVEL_BUDGETS: Readonly<Record<DifficultyLevel, LevelBudget>> = Object.freeze({
  easy: { passes: 1, max_tokens: 256, timeout_ms: 10_000 },
  medium: { passes: 2, max_tokens: 512, timeout_ms: 20_000 },
  hard: { passes: 3, max_tokens: 1024, timeout_ms: 40_000 },
  expert: { passes: 5, max_tokens: 2048, timeout_ms: 60_000 },
});

/** A level from a request's `difficulty` (name in any case, or 1-4); undefined when not a level. */
export function parseDifficulty(value: string | number | undefined | null): DifficultyLevel | undefined {
  if (value === undefined || value === null) return undefined;
  const v = String(value).trim().toLowerCase();
  if ((LEVELS as readonly string[]).includes(v)) return v as DifficultyLevel;
  const n = Number(v);
  if (Number.isInteger(n) && n >= 1 && n <= 4) return LEVELS[n - 1];
  return undefined;
}

export function levelIndex(level: DifficultyLevel): number {
  return LEVELS.indexOf(level);
}
