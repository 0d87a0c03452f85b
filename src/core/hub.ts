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

  /** Ends every wait now, as a timeout would (the log's periodic idle recheck). */
  expireAll(): void {
    for (const set of this.#tickets.values()) for (const t of [...set]) t.expire();
  }
}

export class Ticket {
  #fired = false;
  #done: ((notified: boolean) => void) | undefined;

  constructor(private readonly release: () => void) {}

  get fired(): boolean {
    return this.#fired;
  }

  fire(): void {
    this.#fired = true;
    this.release();
    this.#done?.(true);
  }

  /** Ends a wait in progress as a timeout would (no-op when not waiting). */
  expire(): void {
    this.#done?.(false);
  }

  /**
   * Resolves true when notified, false on timeout (`timeoutMs`; none: only expire() ends it
   * early). Releases the ticket either way.
   */
  wait(timeoutMs?: number): Promise<boolean> {
    if (this.#fired) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => done(false), timeoutMs);
      const done = (notified: boolean): void => {
        clearTimeout(timer);
        this.#done = undefined;
        this.release();
        resolve(notified);
      };
      this.#done = done;
    });
  }

  cancel(): void {
    this.release();
  }
}
