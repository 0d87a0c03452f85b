import net from "node:net";
import { BSON } from "mongodb";

/** A MongoDB command as the proxy sees it on the wire (OP_MSG): its name and its first argument. */
export interface WireCommand {
  name: string;
  /** The command's value when it is a string: the collection for insert/update/find. */
  collection?: string;
  /** A find that asks for one batch only (the poll-mode watcher's query). */
  singleBatch?: boolean;
}

/**
 * What to do with a command: forward it (undefined), hold it back for `stallMs` before forwarding
 * it, or forward it and then drop the connection instead of passing the server's reply back (the
 * server did the work; the client never hears so).
 */
export type WireFault = { stallMs: number } | "drop-reply" | undefined;

const OP_MSG = 2013;

/** Parses an OP_MSG's command name and string argument (section kind 0 = the command document). */
function parseCommand(msg: Buffer): WireCommand | undefined {
  if (msg.length < 27 || msg.readInt32LE(12) !== OP_MSG || msg[20] !== 0) return undefined;
  let at = 21 + 4; // section kind byte, then the document's int32 size
  const type = msg[at++]!;
  const end = msg.indexOf(0, at);
  if (end < 0) return undefined;
  const name = msg.toString("utf8", at, end);
  if (type !== 0x02) return { name };
  const len = msg.readInt32LE(end + 1);
  const collection = msg.toString("utf8", end + 5, end + 4 + len);
  if (name !== "find") return { name, collection };
  const doc = BSON.deserialize(msg.subarray(21, 21 + msg.readInt32LE(21)));
  return doc["singleBatch"] === true ? { name, collection, singleBatch: true } : { name, collection };
}

/** Splits a byte stream into wire messages (each starts with its int32 length). */
class Framer {
  #buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    while (this.#buf.length >= 4) {
      const len = this.#buf.readInt32LE(0);
      if (this.#buf.length < len) break;
      out.push(this.#buf.subarray(0, len));
      this.#buf = this.#buf.subarray(len);
    }
    return out;
  }
}

/**
 * A TCP proxy on 127.0.0.1 that can be cut (every connection dropped, new ones refused, like a
 * database that went away) and restored on the same port. With `faults`, it reads the MongoDB wire
 * protocol and can stall a command or drop the connection after a command was executed but before
 * its reply reaches the client.
 */
export class TcpProxy {
  #server: net.Server | undefined;
  readonly #sockets = new Set<net.Socket>();
  port = 0;
  faults: ((cmd: WireCommand) => WireFault) | undefined;
  readonly counts = { stalled: 0, repliesDropped: 0 };

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** A proxy to the MongoDB server of `uri` (mongodb://host:port/...), not yet started. */
  static toMongo(uri: string): TcpProxy {
    const target = new URL(uri.replace("mongodb://", "http://"));
    return new TcpProxy(target.hostname, Number(target.port));
  }

  /** The connection string that reaches the server through this proxy (once started). */
  get mongoUri(): string {
    return `mongodb://127.0.0.1:${this.port}/?directConnection=true`;
  }

  async start(port = 0): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      if (!this.faults) {
        client.pipe(upstream);
        upstream.pipe(client);
        return;
      }
      // Wire-aware: messages keep their order per direction (a stalled one holds back later ones,
      // as a slow network would).
      const dropReplyTo = new Set<number>();
      const up = new Framer();
      const down = new Framer();
      let chain = Promise.resolve();
      client.on("data", (chunk: Buffer) => {
        for (const msg of up.push(chunk)) {
          const cmd = parseCommand(msg);
          const fault = cmd ? this.faults?.(cmd) : undefined;
          if (fault === "drop-reply") dropReplyTo.add(msg.readInt32LE(4));
          const stall = typeof fault === "object" ? fault.stallMs : 0;
          if (stall > 0) this.counts.stalled++;
          chain = chain.then(async () => {
            if (stall > 0) await new Promise((r) => setTimeout(r, stall));
            if (!upstream.destroyed) upstream.write(msg);
          });
        }
      });
      upstream.on("data", (chunk: Buffer) => {
        for (const msg of down.push(chunk)) {
          if (dropReplyTo.has(msg.readInt32LE(8))) {
            this.counts.repliesDropped++;
            client.destroy();
            upstream.destroy();
            return;
          }
          client.write(msg);
        }
      });
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.#server = server;
    this.port = (server.address() as net.AddressInfo).port;
  }

  /** Drops every connection and stops accepting new ones. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Accepts connections again, on the same port. */
  restore(): Promise<void> {
    return this.start(this.port);
  }

  stop(): Promise<void> {
    return this.cut();
  }
}
