/**
 * `npm run conformance:compare`: the same pinned conformance suite against the pinned reference
 * server and against this service (memory store), in one run. test/conformance/compare.ts
 * counts the results of the two describe blocks and prints them side by side.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { runConformanceTests } from "@durable-streams/server-conformance-tests";
import { storeFactories } from "../support/stores.js";
import { LONG_POLL_MS, startReference, startService, type Target } from "./targets.js";

const targets: [string, () => Promise<Target>][] = [
  ["reference", startReference],
  ["service", () => startService(storeFactories.find((f) => f.name === (process.env["CONFORMANCE_STORE"] ?? "memory"))!)],
];

for (const [name, start] of targets) {
  describe(name, () => {
    const options = { baseUrl: "", longPollTimeoutMs: LONG_POLL_MS };
    let target: Target;
    beforeAll(async () => {
      target = await start();
      options.baseUrl = target.url;
    });
    afterAll(() => target.stop());
    runConformanceTests(options);
  });
}
