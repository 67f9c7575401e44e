// Finds the GGUF models in the local provider's models directory. A model's name is its file name
// without `.gguf`; files sit in the directory itself or one folder down (`<dir>/<name>/<name>.gguf`,
// the layout model downloads usually leave). Only names found here can be loaded, so a request's
// model name never becomes a path by itself.
import { readdir } from 'node:fs/promises';
import path from 'node:path';

const GGUF = /\.gguf$/i;

/** Name -> absolute file path. Files in the directory itself win over same-named ones in folders. */
export async function scanModelsDir(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const entries = await readdir(dir, { withFileTypes: true });
  const folders: string[] = [];
  for (const entry of entries) {
    if (entry.isFile() && GGUF.test(entry.name)) found.set(modelName(entry.name), path.join(dir, entry.name));
    else if (entry.isDirectory() && !entry.name.startsWith('.')) folders.push(entry.name);
  }
  const nested = await Promise.all(
    folders.map(async (folder) => {
      try {
        const inner = await readdir(path.join(dir, folder), { withFileTypes: true });
        return inner.filter((e) => e.isFile() && GGUF.test(e.name)).map((e) => path.join(dir, folder, e.name));
      } catch {
        return []; // unreadable folder: not a model
      }
    }),
  );
  for (const file of nested.flat().sort()) {
    const name = modelName(path.basename(file));
    if (!found.has(name)) found.set(name, file);
  }
  return found;
}

function modelName(file: string): string {
  return file.replace(GGUF, '');
}
