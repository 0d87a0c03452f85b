/**
 * Sailhouse's own Python SDK (`sailhouse` on PyPI, pinned in test/sdk/requirements.txt) against the
 * started service, with auth off and with AUTH=required (the key as the SDK sends it: a raw
 * `Authorization: <key>`). Every call the SDK offers; assertions on the SDK's own objects.
 */
import { afterAll, beforeAll, describe, expect } from "vitest";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { itSdk, runPythonSdk } from "./support/python-sdk.js";

const MODES: { name: string; env: Record<string, string>; apiKey: string }[] = [
  { name: "auth off", env: { AUTH: "off" }, apiKey: "any-key-is-ignored" },
  { name: "AUTH=required", env: { AUTH: "required", API_KEYS: "acme:sh-key-1" }, apiKey: "sh-key-1" },
];

for (const mode of MODES) {
  describe(`Sailhouse Python SDK, ${mode.name}`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ env: mode.env });
    });
    afterAll(async () => app?.close());

    itSdk("publish, pull (POST), ack, nack, subscribe, get_events, scheduled publish", async () => {
      const r = await runPythonSdk("sailhouse_py.py", { baseUrl: app.url, apiKey: mode.apiKey, args: { topic: "orders", subscription: "py-workers" } });
      expect(r.first_pull).toBeNull();
      expect(r.pulled).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), data: { n: 0 }, types: { id: "str", data: "dict" } });
      expect(r.nack_redelivered).toBe(true);
      expect(r.subscribed).toEqual([{ n: 2 }]);
      expect(r.after_subscribe_pull).toBeNull();
      expect(r.page).toEqual({ offset: 1, limit: 2, data: [{ n: 1 }, { n: 2 }], ids: ["str", "str"] });
      expect(r.as_type).toEqual({ n: 1 });
      expect(r.unknown_ack).toMatchObject({ error: "SailhouseError", message: "Failed to acknowledge message: 404" });
    });

    if (mode.env.AUTH === "required") {
      itSdk("a wrong key is refused: the SDK raises its SailhouseError with 401", async () => {
        const r = await runPythonSdk("sailhouse_py.py", { baseUrl: app.url, apiKey: "wrong", args: { topic: "orders", subscription: "x" } }).catch((e: Error) => e.message);
        expect(r).toMatch(/SailhouseError: Failed to pull message: 401/);
      });
    }
  });
}
