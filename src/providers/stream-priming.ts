// ProviderAdapter.streamChat must reject (not fail mid-iteration) when the upstream refuses before
// the first token: a blocked prompt, an error line, an empty body. Priming pulls the first item
// before the stream is handed out, so those failures stay retryable by the router.

/** Awaits the generator's first item, then returns an iterable that replays it and continues. */
export async function primeStream<T>(gen: AsyncGenerator<T>): Promise<AsyncIterable<T>> {
  const first = await gen.next();
  let replayed = false;
  return {
    [Symbol.asyncIterator]() {
      return {
        next: async (): Promise<IteratorResult<T>> => {
          if (!replayed) {
            replayed = true;
            return first;
          }
          return gen.next();
        },
        return: async (value?: unknown): Promise<IteratorResult<T>> => {
          await gen.return(value as T);
          return { done: true, value: undefined };
        },
      };
    },
  };
}
