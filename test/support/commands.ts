/**
 * Counts the MongoDB commands a service instance sends, on the wire: a TcpProxy between the
 * instance and the server that parses every OP_MSG. Only application commands are counted (the
 * driver's monitoring — hello, ping, endSessions, killCursors — is not what a workload costs).
 */
import { TcpProxy, type WireCommand } from "./proxy.js";

/** The commands a workload pays for (what a real replica set executes for it too). */
export const APPLICATION_COMMANDS = new Set(["find", "getMore", "aggregate", "insert", "update", "findAndModify", "delete"]);

export class CommandCounter {
  readonly proxy: TcpProxy;
  /** Counts by "command collection" (getMore: "getMore"), since start. */
  readonly #counts = new Map<string, number>();
  #total = 0;

  constructor(uri: string) {
    this.proxy = TcpProxy.toMongo(uri);
    this.proxy.faults = (cmd) => {
      this.#count(cmd);
      return undefined;
    };
  }

  async start(): Promise<string> {
    await this.proxy.start();
    return this.proxy.mongoUri;
  }

  #count(cmd: WireCommand): void {
    if (!APPLICATION_COMMANDS.has(cmd.name)) return;
    this.#total++;
    const key = cmd.name === "getMore" ? "getMore" : `${cmd.name} ${cmd.collection ?? ""}${cmd.singleBatch ? " (one batch)" : ""}`;
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  /** The application commands counted so far, in all and by command and collection. */
  snapshot(): { total: number; by: Map<string, number> } {
    return { total: this.#total, by: new Map(this.#counts) };
  }

  /** What was counted since `before`, in all and by command and collection (for failure messages). */
  since(before: { total: number; by: Map<string, number> }): { total: number; by: Record<string, number> } {
    const by: Record<string, number> = {};
    for (const [k, v] of this.#counts) {
      const d = v - (before.by.get(k) ?? 0);
      if (d > 0) by[k] = d;
    }
    return { total: this.#total - before.total, by };
  }

  stop(): Promise<void> {
    return this.proxy.stop();
  }
}
