// Where the offline test models live: `<clone>/../shared/models` in CI and the main checkout; a git
// worktree sits deeper, so the nearest ancestor holding `shared/models` is used.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function sharedModelsDir(): string | undefined {
  let dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  for (let i = 0; i < 4; i++) {
    dir = path.dirname(dir);
    const candidate = path.join(dir, 'shared', 'models');
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The stories260K folder, or undefined when the model is absent. */
export function storiesDir(): string | undefined {
  const base = sharedModelsDir();
  const dir = base && path.join(base, 'stories260K');
  return dir && existsSync(path.join(dir, 'stories260K.gguf')) ? dir : undefined;
}
