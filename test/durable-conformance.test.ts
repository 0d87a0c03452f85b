/**
 * The Durable Streams server conformance suite (@durable-streams/server-conformance-tests, pinned
 * in package.json), run unchanged against this service on every store adapter. Every test the
 * reference server passes must pass here (README, "Durable Streams": the list of tests not passed,
 * with reasons, is empty today). `npm run conformance:compare` runs it against the reference server
 * too and prints both pass counts.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { runConformanceTests } from "@durable-streams/server-conformance-tests";
import { storeFactories } from "./support/stores.js";
import { LONG_POLL_MS, startService, type Target } from "./conformance/targets.js";

describe.each(storeFactories)("Durable Streams conformance ($name store)", (factory) => {
  const options = { baseUrl: "", longPollTimeoutMs: LONG_POLL_MS };
  let target: Target;
  beforeAll(async () => {
    target = await startService(factory);
    options.baseUrl = target.url;
  });
  afterAll(async () => {
    await target.stop();
    await factory.teardown();
  });
  runConformanceTests(options);
});
