// Command-line options of the benchmark scripts: `--name value`.

/** The value after `--name`, or undefined. */
export function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

/** `--name <number>`, or `def` when absent. */
export function numberFlag(args: readonly string[], name: string, def: number): number {
  return Number(flag(args, name) ?? def);
}
