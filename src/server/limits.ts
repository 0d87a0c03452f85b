/**
 * Instance-wide limits at the listener: bytes of request bodies in flight, and subscriptions per
 * project and per instance. Each refuses with a clear error (503 / `resource_exhausted`, 429 /
 * `resource_exhausted`) instead of letting memory or work grow without bound.
 */
import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import type { Req } from "./sse.js";
import { capacityExceeded } from "../api/errors.js";
import { credentialOf, type Auth } from "./auth.js";
import { untilRevoked, type KeyHold } from "./revocation.js";

/** The instance is at its budget of request bytes in flight: 503 on HTTP paths, `resource_exhausted` on RPCs. */
export function busyError(limitBytes: number): ConnectError {
  return capacityExceeded(`the service has ${limitBytes} bytes of requests in flight, its limit; retry shortly`);
}

/**
 * Where a tracked request keeps its byte counter, for readers that take the body's chunks from
 * `data` events instead of an iterator (src/server/http/body.ts): `take(n)` counts a chunk, or
 * refuses it (false) when the instance is at its budget.
 */
export const INFLIGHT = Symbol("inflight bytes");
export interface InflightCounter {
  take(n: number): boolean;
  readonly limit: number;
}

/**
 * Bytes of request bodies read and not yet answered, for the whole instance. A request's bytes
 * count from the moment they are read until its response closes, so they cover both the body
 * being read and the publish it became while it waits for the store. Bodies of streaming-request
 * RPCs (PublishStream) count while each chunk is being read; the publishes such a call queues are
 * bounded by its window (src/api/streams.ts).
 */
export class InflightBytes {
  #used = 0;
  constructor(readonly limit: number) {}

  get used(): number {
    return this.#used;
  }

  /** Takes `n` bytes, or returns false (nothing taken) when that would pass the limit. */
  take(n: number): boolean {
    if (this.#used + n > this.limit) return false;
    this.#used += n;
    return true;
  }

  give(n: number): void {
    this.#used = Math.max(0, this.#used - n);
  }

  /**
   * Accounts every chunk read from `req` (whoever reads it: connect-node and the gateway both
   * iterate the request) against the budget; a chunk over the budget fails the read with
   * busyError. Returns the function that gives the request's bytes back (call it when the
   * response closes).
   */
  track(req: Req, streaming: boolean, onBusy: () => void): () => void {
    let held = 0;
    const self = this;
    /** Counts a chunk read from the body; false (after onBusy) when it would pass the budget. */
    const take = (n: number): boolean => {
      if (streaming) {
        // The previous chunk has been handled: only the chunk being read counts.
        self.give(held);
        held = 0;
      }
      if (!self.take(n)) {
        onBusy();
        return false;
      }
      held += n;
      return true;
    };
    (req as unknown as Record<symbol, InflightCounter>)[INFLIGHT] = { take, limit: this.limit };
    // Readers reach the body through either entry: `for await` ([Symbol.asyncIterator]) or
    // Readable#iterator(options), which connect-node 2.3 uses. Both are wrapped, so whichever
    // reads the body is counted.
    type Entry = (...args: unknown[]) => AsyncIterator<Buffer>;
    const target = req as unknown as Record<PropertyKey, Entry>;
    const wrap = (name: PropertyKey): void => {
      const original = target[name]!.bind(req);
      target[name] = (...args: unknown[]) => counted(original(...args));
    };
    wrap(Symbol.asyncIterator);
    wrap("iterator");
    function counted(it: AsyncIterator<Buffer>): AsyncIterator<Buffer> & AsyncIterable<Buffer> {
      return {
        async next() {
          if (streaming) {
            // The previous chunk has been handled: only the chunk being read counts.
            self.give(held);
            held = 0;
          }
          const r = await it.next();
          if (!r.done && !take((r.value as Buffer).length)) {
            await it.return?.();
            throw busyError(self.limit);
          }
          return r;
        },
        async return(value?: unknown) {
          await it.return?.(value);
          return { done: true as const, value: undefined };
        },
        [Symbol.asyncIterator]() {
          return this;
        },
      } as AsyncIterator<Buffer> & AsyncIterable<Buffer>;
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.give(held);
      held = 0;
    };
  }
}

/** A slot taken; release() is idempotent. */
export interface Slot {
  release(): void;
}

/** Open subscriptions (Subscribe and the dialects' streams, RPC and SSE) per project and per instance. */
export class SubscriptionLimits {
  readonly #byProject = new Map<string, number>();
  #total = 0;

  constructor(
    readonly perProject: number,
    readonly perInstance: number,
  ) {}

  get open(): number {
    return this.#total;
  }

  /** A slot for one subscription of `project`, or the reason there is none. */
  take(project: string): Slot | { refused: string } {
    const mine = this.#byProject.get(project) ?? 0;
    if (this.#total >= this.perInstance) return { refused: `this instance has ${this.perInstance} subscriptions open, its limit; retry later or use another instance` };
    if (mine >= this.perProject) return { refused: `project ${JSON.stringify(project.slice(0, 64))} has ${this.perProject} subscriptions open, its limit` };
    this.#byProject.set(project, mine + 1);
    this.#total++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#total--;
        const n = (this.#byProject.get(project) ?? 1) - 1;
        if (n <= 0) this.#byProject.delete(project);
        else this.#byProject.set(project, n);
      },
    };
  }
}

/** A live reader's place while it is open: a subscription slot and its key's revocation hold. */
export type LiveReader = KeyHold;

/**
 * Every live reader on every surface (RPC server streams, the dialects' SSE, Durable Streams SSE
 * and long-polls) opens here: it takes one of its project's subscription slots and, when it came
 * with a key, is held by the key's revocation watch (src/server/revocation.ts) until it ends.
 */
export class LiveReaders {
  constructor(
    readonly limits: SubscriptionLimits,
    private readonly auth: Pick<Auth, "holdStream">,
    private readonly onRefused: () => void = () => {},
  ) {}

  /** Opens a reader of `project` that presented `credential` (already authenticated), or says why not. */
  open(project: string, credential: string | undefined): LiveReader | { refused: string } {
    const slot = this.limits.take(project);
    if ("refused" in slot) {
      this.onRefused();
      return slot;
    }
    const hold = this.auth.holdStream(credential);
    let released = false;
    return {
      revoked: hold.revoked,
      release() {
        if (released) return;
        released = true;
        hold.release();
        slot.release();
      },
    };
  }
}

/**
 * RPC side of the live readers (runs after authentication, so the project is known): a
 * server-streaming call of the event services holds a slot until it ends (none free →
 * `resource_exhausted`, HTTP 429 on the Connect protocol), and ends with `unauthenticated` once
 * its key is revoked.
 */
export function liveReaderInterceptor(readers: LiveReaders, project: (req: { contextValues: ContextValues }) => string): Interceptor {
  return (next) => async (req) => {
    if (req.method.methodKind !== "server_streaming" || req.service.typeName.startsWith("grpc.")) return next(req);
    const opened = readers.open(project(req), credentialOf((n) => req.header.get(n) ?? undefined));
    if ("refused" in opened) throw new ConnectError(opened.refused, Code.ResourceExhausted);
    const reader: LiveReader = opened;
    // The call's signal aborts when the call ends, however it ends (even if never iterated).
    req.signal.addEventListener("abort", () => reader.release(), { once: true });
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      reader.release();
      throw err;
    }
    if (!res.stream) return res;
    const inner = res.message;
    async function* held(): AsyncGenerator<unknown> {
      try {
        yield* untilRevoked(inner, reader);
      } finally {
        reader.release();
      }
    }
    return { ...res, message: held() } as typeof res;
  };
}
