/**
 * The servers every real-client test (test/clients/*.test.ts) runs its scenarios against: this
 * service on each store adapter (memory, and MongoDB through test/support/stores.ts) and the
 * protocol's reference server (@durable-streams/server, pinned), so a scenario that passes on the
 * reference and fails here is a bug here, not in the test. All on 127.0.0.1 and a port the OS
 * picks, with auth off (the ecosystem's clients are pointed at a bare base URL, as in their docs).
 */
import { DurableStreamTestServer } from "@durable-streams/server";
import { startTestServer } from "../support/server.js";
import { storeFactories } from "../support/stores.js";
import type { App } from "../../src/server/app.js";

export type TargetName = "memory" | "mongo" | "reference";

export interface ClientTarget {
  name: TargetName;
  /** Base URL (no trailing slash); streams are `${url}/v1/stream/<name>`. */
  url: string;
  /** This service (undefined for the reference server). */
  app?: App;
  stop(): Promise<void>;
}

/** What describe.each iterates: one row per server. */
export const targets: { name: TargetName }[] = [{ name: "memory" }, { name: "mongo" }, { name: "reference" }];

export interface TargetOptions {
  /** Environment for this service (the reference has no equivalent settings). */
  env?: Record<string, string>;
  /** Long-poll timeout on both servers: short, so a reader that waits for nothing ends its poll soon. */
  longPollMs?: number;
}

export async function startTarget(name: TargetName, opts: TargetOptions = {}): Promise<ClientTarget> {
  const longPollMs = opts.longPollMs ?? 2000;
  if (name === "reference") {
    const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", longPollTimeout: longPollMs });
    const url = (await server.start()).replace(/\/$/, "");
    return { name, url, stop: () => server.stop() };
  }
  const factory = storeFactories.find((f) => f.name === name)!;
  const app = await startTestServer({ store: await factory.make(), env: { DURABLE_LONG_POLL_MS: String(longPollMs), ...opts.env } });
  return {
    name,
    url: app.url,
    app,
    stop: async () => {
      await app.close();
      await factory.teardown();
    },
  };
}

/**
 * Two instances of this service on one MongoDB database (as a deployment behind a load balancer
 * runs it): what one instance writes, the other serves, live (its change stream) and on reads.
 */
export async function startTwoMongoInstances(opts: TargetOptions = {}): Promise<{ urls: [string, string]; stop(): Promise<void> }> {
  const factory = storeFactories.find((f) => f.name === "mongo")!;
  const dbName = uniqueName("two_instances").replaceAll("-", "_");
  const env = { DURABLE_LONG_POLL_MS: String(opts.longPollMs ?? 2000), ...opts.env };
  const apps: App[] = [];
  for (let i = 0; i < 2; i++) apps.push(await startTestServer({ store: await factory.make({ dbName }), env }));
  return {
    urls: [apps[0]!.url, apps[1]!.url],
    stop: async () => {
      for (const app of apps) await app.close();
      await factory.teardown();
    },
  };
}

/** Polls `cond` every 10 ms; fails after `ms` with `what()` (generous: the CI machine is busy). */
export async function until(cond: () => boolean, what: () => string = () => "", ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let counter = 0;
/** A stream name unique in this process (the servers live for a whole file). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${++counter}`;
}
