// How deep a JSON text nests objects and arrays, checked before it is parsed: V8 parses any depth,
// but the gateway serialises what it parsed again (to an upstream, into the store), and
// JSON.stringify overflows the stack past a few thousand levels (docs/decisions.md). The request
// parsers (app.ts), batch input lines and ingested webhooks refuse bodies past MAX_JSON_DEPTH.

/** Deepest nesting of objects and arrays a request body may have (a tool's JSON schema needs a few dozen at most). */
export const MAX_JSON_DEPTH = 128;

/**
 * Whether JSON text nests objects and arrays deeper than `max`, by one pass over it that skips
 * strings with indexOf (a body is mostly string content). Malformed text is left to the parser.
 */
export function nestedDeeperThan(text: string, max: number): boolean {
  // Nesting deeper than `max` takes at least 2 * max brackets.
  if (text.length <= 2 * max) return false;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // To the closing quote: one not preceded by an odd run of backslashes.
      for (;;) {
        const q = text.indexOf('"', i + 1);
        if (q < 0) return false;
        let backslashes = 0;
        while (text.charCodeAt(q - 1 - backslashes) === 92) backslashes++;
        i = q;
        if (backslashes % 2 === 0) break;
      }
    } else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) {
      depth--;
    }
  }
  return false;
}
