// A stream counts as started only once its first item has arrived. Provider adapters prime their
// parsed streams so an upstream that refuses before the first token (a blocked prompt, an error
// line, an empty body) rejects streamChat and stays retryable; the router primes what adapters
// return for the same reason. One implementation for both.

/** Awaits the first item, then returns an iterable that replays it and continues. */
export async function primeStream<T>(stream: AsyncIterable<T>): Promise<AsyncIterable<T>> {
  const iterator = stream[Symbol.asyncIterator]();
  const first = await iterator.next();
  return {
    [Symbol.asyncIterator]() {
      let pending: IteratorResult<T> | undefined = first;
      return {
        next() {
          if (pending) {
            const p = pending;
            pending = undefined;
            return Promise.resolve(p);
          }
          return iterator.next();
        },
        return(value?: unknown) {
          pending = undefined;
          return iterator.return ? iterator.return(value) : Promise.resolve({ done: true as const, value: undefined });
        },
      };
    },
  };
}
