// Reproduces what the Dockerfile puts in its image, without Docker: each stage's filesystem is a
// directory, COPY lines copy from the build context (minus .dockerignore) or from an earlier stage,
// and the few RUN commands the Dockerfile uses are emulated (`npm ci` links the checkout's installed
// packages, `npm run build` runs the real build script, `npm prune` hides what it removes, `mkdir -p`
// makes the directory). `npm ci` and `npm prune` honour `--omit=dev|optional` as npm does, by the
// lockfile's dev/optional/devOptional marks: a build step that needs an omitted package fails here as
// it does in `docker build`. `$VAR` and `${VAR:+word}` in RUN lines expand from the stage's ARGs. A
// RUN command the emulator does not know fails loudly, so a changed Dockerfile cannot pass unexamined.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, posix, relative, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Instruction {
  op: string;
  args: string;
}

export interface Stage {
  name: string;
  instructions: Instruction[];
}

/** Stages of a Dockerfile: line continuations joined, comments dropped, `FROM … AS name` named. */
export function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const line = raw.trimEnd();
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full) lines.push(full);
  }
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(line) as RegExpExecArray;
    const op = (m[1] as string).toUpperCase();
    const args = (m[2] as string).trim();
    if (op === 'FROM') {
      const as = /\sAS\s+(\S+)$/i.exec(args);
      stages.push({ name: as ? (as[1] as string) : String(stages.length), instructions: [] });
      continue;
    }
    stages.at(-1)?.instructions.push({ op, args });
  }
  return stages;
}

/** `KEY=value KEY2=value2` (the only ENV form the Dockerfile uses). */
function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) out[m[1] as string] = (m[2] as string).replace(/^"|"$/g, '');
  return out;
}

function jsonArray(args: string, what: string): string[] {
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed)) throw new Error(`${what} must be in exec form (a JSON array): ${args}`);
  return parsed as string[];
}

/** .dockerignore as a predicate over context-relative paths (exact names, `dir/…` prefixes, `*` within one segment). */
function dockerignore(context: string): (rel: string) => boolean {
  const file = join(context, '.dockerignore');
  const patterns = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'))
    : [];
  const res = patterns.map((p) => new RegExp(`^${p.replace(/\/$/, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`));
  return (rel) => res.some((r) => r.test(rel));
}

export interface ImageLayout {
  /** The runtime stage's working directory, as a directory on this machine. */
  workdir: string;
  /** ENV of the runtime stage. */
  env: Record<string, string>;
  /** ENTRYPOINT + CMD. */
  command: string[];
}

/** The shell's `$VAR`, `${VAR}`, `${VAR:-word}` and `${VAR:+word}` (the forms a Dockerfile RUN line uses with ARGs). */
export function expandVars(text: string, vars: Record<string, string>): string {
  return text
    .replace(/\$\{(\w+)(?::([-+])((?:[^{}]|\{[^{}]*\})*))?\}/g, (_, name: string, op: string | undefined, word: string | undefined) => {
      const value = vars[name] ?? '';
      if (op === '+') return value ? expandVars(word ?? '', vars) : '';
      if (op === '-') return value || expandVars(word ?? '', vars);
      return value;
    })
    .replace(/\$(\w+)/g, (_, name: string) => vars[name] ?? '');
}

/** The groups an npm command's `--omit=…` / `--omit …` flags leave out. */
function omitted(command: string): Set<string> {
  return new Set([...command.matchAll(/--omit(?:=|\s+)(\S+)/g)].map((m) => m[1] as string));
}

/**
 * What `npm ci`/`npm prune` with these omissions leave in node_modules, as a directory of links into
 * the checkout's `nodeModules`: a top-level package is left out when the lockfile marks it `dev`
 * (with dev omitted), `optional` (with optional omitted) or `devOptional` (with both), npm's rule.
 */
function linkNodeModules(nodeModules: string, lockfile: string, target: string, omit: Set<string>): void {
  const packages = (JSON.parse(readFileSync(lockfile, 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }> }).packages;
  const hidden = (name: string) => {
    const entry = packages[`node_modules/${name}`];
    if (!entry) return false;
    return (entry.dev === true && omit.has('dev')) || (entry.optional === true && omit.has('optional')) || (entry.devOptional === true && omit.has('dev') && omit.has('optional'));
  };
  const real = realpathSync(nodeModules);
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  for (const entry of readdirSync(real)) {
    if (entry.startsWith('@')) {
      for (const scoped of readdirSync(join(real, entry))) {
        if (hidden(`${entry}/${scoped}`)) continue;
        mkdirSync(join(target, entry), { recursive: true });
        symlinkSync(join(real, entry, scoped), join(target, entry, scoped));
      }
    } else if (!hidden(entry)) {
      symlinkSync(join(real, entry), join(target, entry));
    }
  }
}

/**
 * Builds every stage of `dockerfile` under `into/<stage>/` and returns the last (runtime) stage's
 * layout. `nodeModules` (the checkout's installed packages) stands in for `npm ci`, linked, not
 * copied; `buildArgs` are `docker build --build-arg`s.
 */
export async function reproduceImage(opts: { context: string; dockerfile: string; into: string; nodeModules: string; buildArgs?: Record<string, string> }): Promise<ImageLayout> {
  const stages = parseDockerfile(readFileSync(join(opts.context, opts.dockerfile), 'utf8'));
  const ignored = dockerignore(opts.context);
  const roots = new Map<string, string>();
  let layout: ImageLayout | undefined;
  for (const stage of stages) {
    const root = join(opts.into, `stage-${stage.name}`);
    mkdirSync(root, { recursive: true });
    roots.set(stage.name, root);
    let workdir = '/';
    const env: Record<string, string> = {};
    const argValues: Record<string, string> = {};
    // The groups the stage's last `npm ci`/`npm prune` left out (a prune never brings one back).
    const omit = new Set<string>();
    let entrypoint: string[] = [];
    let cmd: string[] = [];
    const inStage = (p: string) => join(root, posix.resolve(workdir, p));
    for (const { op, args } of stage.instructions) {
      if (op === 'WORKDIR') {
        workdir = posix.resolve(workdir, args);
        mkdirSync(inStage('.'), { recursive: true });
      } else if (op === 'ARG') {
        const m = /^(\w+)(?:=(.*))?$/.exec(args);
        if (m) argValues[m[1] as string] = opts.buildArgs?.[m[1] as string] ?? (m[2] ?? '').replace(/^"|"$/g, '');
      } else if (op === 'ENV') {
        Object.assign(env, parseEnv(args));
      } else if (op === 'COPY') {
        if (args.startsWith('[')) throw new Error(`COPY in JSON form is not emulated: ${args}`);
        const words = args.split(/\s+/);
        const flags = words.filter((w) => w.startsWith('--'));
        const paths = words.filter((w) => !w.startsWith('--'));
        const dest = paths.pop() as string;
        const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
        const sourceRoot = from === undefined ? undefined : roots.get(from);
        if (from !== undefined && !sourceRoot) throw new Error(`COPY --from=${from}: no such stage before this one`);
        const toDir = paths.length > 1 || dest.endsWith('/');
        for (const src of paths) {
          const source = sourceRoot ? join(sourceRoot, src) : join(opts.context, src);
          if (!existsSync(source)) throw new Error(`COPY ${src}: not found in ${sourceRoot ? `stage ${from}` : 'the build context'}`);
          if (!sourceRoot && ignored(relative(opts.context, source))) throw new Error(`COPY ${src}: excluded by .dockerignore`);
          const target = toDir && !statSync(source).isDirectory() ? join(inStage(dest), basename(src)) : inStage(dest);
          copy(source, target, sourceRoot ? () => false : (p) => ignored(relative(opts.context, p)));
        }
      } else if (op === 'RUN') {
        for (const command of expandVars(args, { ...argValues, ...env }).split('&&').map((c) => c.trim())) {
          if (/^npm (ci|prune)\b/.test(command)) {
            if (command.startsWith('npm ci')) omit.clear();
            for (const group of omitted(command)) omit.add(group);
            linkNodeModules(opts.nodeModules, join(inStage('.'), 'package-lock.json'), inStage('node_modules'), omit);
          } else if (/^npm run build\b/.test(command)) {
            await run('npm', ['run', 'build'], { cwd: inStage('.'), env: { ...process.env, ...env } }).catch((err: Error & { stdout?: string; stderr?: string }) => {
              // tsc reports on stdout: say what failed, as `docker build` would.
              throw new Error(`RUN npm run build failed in stage ${stage.name}:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
            });
          }
          else if (/^mkdir -p /.test(command)) for (const d of command.slice('mkdir -p '.length).split(/\s+/)) mkdirSync(inStage(d), { recursive: true });
          // Ownership and the npm cache change no file the gateway reads.
          else if (/^(chown|npm cache clean)\b/.test(command)) continue;
          else throw new Error(`RUN ${command}: not emulated; teach test/helpers/dockerfile.ts what it does`);
        }
      } else if (op === 'ENTRYPOINT') {
        entrypoint = jsonArray(args, 'ENTRYPOINT');
      } else if (op === 'CMD') {
        cmd = jsonArray(args, 'CMD');
      }
      // USER, EXPOSE, HEALTHCHECK and LABEL put no file in the image.
    }
    layout = { workdir: inStage('.'), env, command: [...entrypoint, ...cmd] };
  }
  if (!layout) throw new Error('no stage in the Dockerfile');
  return layout;
}

/** Docker's COPY: a directory's contents into the target, a file to the target; symlinks kept as links. */
function copy(source: string, target: string, skip: (path: string) => boolean): void {
  if (lstatSync(source).isSymbolicLink()) {
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(resolve(dirname(source), readlinkSync(source)), target);
    return;
  }
  cpSync(source, target, { recursive: true, verbatimSymlinks: true, filter: (p) => p === source || !skip(p) });
}

/**
 * The packages the modules reachable from `entry` import (compiled JS; relative imports followed),
 * each marked static (`import … from`, loaded at start-up) or dynamic only (`import('…')`, loaded
 * when a feature asks for it).
 */
export function packageImports(entry: string): Map<string, 'static' | 'dynamic'> {
  const out = new Map<string, 'static' | 'dynamic'>();
  const seen = new Set<string>();
  const queue = [resolve(entry)];
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    const found: Array<[string, 'static' | 'dynamic']> = [
      ...[...text.matchAll(/^[ \t]*(?:import|export)\b[^;'"()]*?\bfrom\s*(['"])([^'"\n]+)\1/gm)].map((m) => [m[2] as string, 'static'] as [string, 'static']),
      ...[...text.matchAll(/^[ \t]*import\s*(['"])([^'"\n]+)\1/gm)].map((m) => [m[2] as string, 'static'] as [string, 'static']),
      ...[...text.matchAll(/\bimport\(\s*(['"])([^'"\n]+)\1\s*\)/g)].map((m) => [m[2] as string, 'dynamic'] as [string, 'dynamic']),
    ];
    for (const [spec, kind] of found) {
      if (spec.startsWith('.')) {
        queue.push(resolve(dirname(file), spec));
        continue;
      }
      if (spec.startsWith('node:')) continue;
      const parts = spec.split('/');
      const pkg = spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string);
      if (out.get(pkg) !== 'static') out.set(pkg, kind);
    }
  }
  return out;
}
