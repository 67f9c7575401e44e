// Writes issued during one event-loop turn leave in one system call: the stream is corked at the
// turn's first write and uncorked at setImmediate, after the turn's I/O callbacks. Used for the
// Redis sockets (every command of a turn in one write) and SSE responses (chunks parsed from one
// upstream read in one write). Order is kept; a write waits at most for the rest of its turn.

export interface Corkable {
  cork(): void;
  uncork(): void;
}

export interface TurnCork {
  /** Call before each write: corks the stream if this turn has not yet. */
  hold(): void;
  /** Uncorks now if corked (a full buffer never drains while corked); the turn's own uncork then does nothing. */
  release(): void;
}

export function turnCork(stream: Corkable): TurnCork {
  let corked = false;
  const release = () => {
    if (!corked) return;
    corked = false;
    stream.uncork();
  };
  return {
    hold() {
      if (corked) return;
      corked = true;
      stream.cork();
      setImmediate(release);
    },
    release,
  };
}
