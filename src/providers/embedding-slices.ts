// Embedding calls an upstream takes only so many inputs at a time (Gemini's batchEmbedContents 100,
// Cohere's embed 96; the gateway's route takes 2,048): the inputs go in slices of at most that many,
// a few calls at a time, and the answers are put back together in input order.

export interface SliceAnswer<R> {
  items: R[];
  tokens: number;
}

/**
 * Calls `call` on consecutive slices of at most `size` inputs, at most `concurrency` at once. The
 * first failure fails the whole and no further slice is sent (each call is billed, and a retry of
 * the request sends them all again).
 */
export async function embedInSlices<R>(inputs: readonly string[], size: number, call: (slice: string[]) => Promise<SliceAnswer<R>>, concurrency = 4): Promise<SliceAnswer<R>> {
  if (inputs.length <= size) return call([...inputs]);
  const slices: string[][] = [];
  for (let i = 0; i < inputs.length; i += size) slices.push(inputs.slice(i, i + size));
  const answers: SliceAnswer<R>[] = new Array(slices.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < slices.length && !failed) {
      const i = next++;
      try {
        answers[i] = await call(slices[i] as string[]);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, slices.length) }, worker));
  return { items: answers.flatMap((a) => a.items), tokens: answers.reduce((n, a) => n + a.tokens, 0) };
}
