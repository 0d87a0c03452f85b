/**
 * Wakes the local subscribers of a stream. A subscriber takes a ticket before it reads the store,
 * so a wake-up that happens between its read and its wait is never missed.
 */
export class Hub {
  readonly #tickets = new Map<string, Set<Ticket>>();

  ticket(stream: string): Ticket {
    let set = this.#tickets.get(stream);
    if (!set) {
      set = new Set();
      this.#tickets.set(stream, set);
    }
    const t = new Ticket(() => {
      set.delete(t);
      if (set.size === 0 && this.#tickets.get(stream) === set) this.#tickets.delete(stream);
    });
    set.add(t);
    return t;
  }

  notify(stream: string): void {
    const set = this.#tickets.get(stream);
    if (!set) return;
    for (const t of [...set]) t.fire();
  }

  /** Streams that have subscribers waiting on them now. */
  streams(): IterableIterator<string> {
    return this.#tickets.keys();
  }
}

export class Ticket {
  #fired = false;
  #wake: (() => void) | undefined;

  constructor(private readonly release: () => void) {}

  get fired(): boolean {
    return this.#fired;
  }

  fire(): void {
    this.#fired = true;
    this.release();
    this.#wake?.();
  }

  /** Resolves true when notified, false on timeout or abort. Releases the ticket either way. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#fired) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (notified: boolean): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#wake = undefined;
        this.release();
        resolve(notified);
      };
      const onAbort = (): void => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#wake = () => done(true);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (signal?.aborted) done(false);
    });
  }

  cancel(): void {
    this.release();
  }
}
