/**
 * Auth for the whole life of a stream. A request's key is checked when the request arrives; a
 * stream (SSE, a Durable Streams live read, an RPC server stream) may then stay open for hours. So
 * every open stream that authenticated with a key is registered here under the key's hash, and one
 * periodic check asks the key store which of the keys in use are still live, with one query for
 * all of them: the cost is one check per instance per period, however many streams are open. A
 * stream whose key is gone (revoked, or past its expiry) is told so and ends in its dialect (SSE: a final error event;
 * RPC: `unauthenticated`; a long-poll: 401).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { KeyStore } from "../store/keys.js";

/** What a stream holds while it is open: `revoked` resolves (never rejects) once its key is no longer live. */
export interface KeyHold {
  readonly revoked: Promise<ConnectError>;
  release(): void;
}

/** A hold that never ends (auth off, or no key presented). */
export const NO_HOLD: KeyHold = { revoked: new Promise<ConnectError>(() => {}), release() {} };

/** Hashes per query, so one check of very many keys stays a few bounded queries. */
const HASHES_PER_QUERY = 1000;

export function revokedError(): ConnectError {
  return new ConnectError("the API key was revoked or has expired; this stream has ended (open it again with a live key)", Code.Unauthenticated);
}

export class StreamKeys {
  /** Open streams by key hash: each entry ends one stream. */
  readonly #open = new Map<string, Set<(err: ConnectError) => void>>();
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  /** Checks run so far (for tests and the metric). */
  checks = 0;

  constructor(
    private readonly keys: Pick<KeyStore, "liveHashes">,
    /** How often the keys in use are checked. */
    readonly periodMs: number,
    /** Told each check's outcome (the auth cache takes it, so new requests agree with open streams). */
    private readonly onChecked?: (hashes: readonly string[], live: ReadonlySet<string>) => void,
  ) {}

  /** Streams open under some key. */
  get streams(): number {
    let n = 0;
    for (const s of this.#open.values()) n += s.size;
    return n;
  }

  /** Registers a stream opened with the key of this hash. */
  hold(hash: string): KeyHold {
    let end!: (err: ConnectError) => void;
    const revoked = new Promise<ConnectError>((resolve) => (end = resolve));
    let set = this.#open.get(hash);
    if (!set) this.#open.set(hash, (set = new Set()));
    set.add(end);
    this.#timer ??= setInterval(() => void this.check(), this.periodMs).unref();
    return {
      revoked,
      release: () => {
        const s = this.#open.get(hash);
        if (!s?.delete(end) || s.size > 0) return;
        this.#open.delete(hash);
        if (this.#open.size === 0) this.#stop();
      },
    };
  }

  /** One check of every key in use (run by the timer; exposed for tests). Concurrent calls share one. */
  check(): Promise<void> {
    this.#checking ??= this.#run().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #run(): Promise<void> {
    const hashes = [...this.#open.keys()];
    if (hashes.length === 0) return;
    this.checks++;
    const live = new Set<string>();
    try {
      for (let i = 0; i < hashes.length; i += HASHES_PER_QUERY) {
        for (const h of await this.keys.liveHashes(hashes.slice(i, i + HASHES_PER_QUERY), new Date())) live.add(h);
      }
    } catch {
      // The key store is unreachable: that says nothing about the keys, so no stream ends for it
      // (the next period checks again; new requests meet the outage themselves).
      return;
    }
    this.onChecked?.(hashes, live);
    for (const h of hashes) {
      if (live.has(h)) continue;
      const ends = this.#open.get(h);
      this.#open.delete(h);
      for (const end of ends ?? []) end(revokedError());
    }
    if (this.#open.size === 0) this.#stop();
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    this.#stop();
    this.#open.clear();
  }
}

/**
 * `source`, ending with the hold's error once its key is revoked, even while the source waits for
 * its next item (the source is then returned; whoever runs it aborts its signal when the stream ends).
 */
export async function* untilRevoked<T>(source: AsyncIterable<T>, hold: KeyHold): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const revoked = hold.revoked.then((err) => ({ revoked: err }));
  let finished = false;
  try {
    for (;;) {
      const next = await Promise.race([it.next(), revoked]);
      if ("revoked" in next) throw next.revoked;
      if (next.done) {
        finished = true;
        return;
      }
      yield next.value;
    }
  } finally {
    // A pending next() settles once the stream's signal is aborted; return() then runs after it.
    if (!finished) void it.return?.()?.catch(() => {});
  }
}
