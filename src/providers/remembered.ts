// A bounded set of names an adapter learned something about at run time (a model whose server has
// no `/completions`, one that cannot think): kept until restart, the oldest forgotten first once
// `max` are kept, so a client sending many model names cannot grow it.

/** Adds `name` to `set` as its newest entry, forgetting the oldest beyond `max`. */
export function rememberBounded(set: Set<string>, name: string, max: number): void {
  set.delete(name);
  set.add(name);
  while (set.size > max) set.delete(set.values().next().value as string);
}
