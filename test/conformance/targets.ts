/**
 * The two servers the pinned Durable Streams conformance suite runs against: this service (on a
 * store adapter) and the protocol's reference server (@durable-streams/server, pinned), both on
 * 127.0.0.1 and a port the OS picks, long-polls shortened so the suite runs in about a minute.
 */
import { DurableStreamTestServer } from "@durable-streams/server";
import { startTestServer } from "../support/server.js";
import type { StoreFactory } from "../support/stores.js";

/** Long-poll timeout of both servers, and what the suite is told (it waits this plus 1 s). */
export const LONG_POLL_MS = 500;

export interface Target {
  url: string;
  stop(): Promise<void>;
}

/** This service with auth off (the suite sends no credentials; loopback only) on the given store. */
export async function startService(factory: StoreFactory): Promise<Target> {
  const store = await factory.make();
  const app = await startTestServer({ store, env: { AUTH: "off", DURABLE_LONG_POLL_MS: String(LONG_POLL_MS) } });
  return { url: app.url, stop: () => app.close() };
}

export async function startReference(): Promise<Target> {
  const server = new DurableStreamTestServer({ port: 0, host: "127.0.0.1", longPollTimeout: LONG_POLL_MS });
  const url = await server.start();
  return { url, stop: () => server.stop() };
}
