/**
 * The Durable Streams Python client (PyPI `durable-streams` 0.1.0, pinned in
 * test/sdk/requirements.txt, run from test/sdk/.venv: `bash test/sdk/setup.sh`), sync and async,
 * through test/sdk/durable_streams_py.py, on this service (both stores) and the reference server:
 * create, append, catch-up read, resume from an offset, then a live SSE read of messages appended
 * while it waits. This client does not reconnect when a server ends an SSE response, so the
 * service runs with `DURABLE_SSE_MAX_MS=0` (SSE never ended by age), the setting documented for it.
 */
import { afterAll, beforeAll, describe, expect } from "vitest";
import { itSdk, startPythonSdk } from "../support/python-sdk.js";
import { startTarget, targets, uniqueName, type ClientTarget } from "./targets.js";

const LIVE = 30;

describe.each(targets)("PyPI durable-streams on $name", ({ name }) => {
  let target: ClientTarget;
  beforeAll(async () => {
    target = await startTarget(name, { env: { DURABLE_SSE_MAX_MS: "0" } });
  });
  afterAll(async () => {
    await target?.stop();
  });

  for (const mode of ["sync", "async"] as const) {
    itSdk(`${mode}: create, append, catch-up, resume from an offset, live over SSE`, async () => {
      const url = `${target.url}/v1/stream/${uniqueName(`py-${mode}`)}`;
      const py = startPythonSdk("durable_streams_py.py", { baseUrl: target.url, args: { url, mode, live: LIVE } });
      try {
        const [ready] = await py.waitForLines(1, 30_000);
        const first20 = Array.from({ length: 20 }, (_, i) => i);
        expect(ready).toEqual({ ready: true, catchup: first20, resumed: first20.slice(10) });
        // Appended while the script reads live, in three POSTs with pauses between them.
        for (let k = 0; k < 3; k++) {
          const batch = Array.from({ length: LIVE / 3 }, (_, j) => ({ i: 20 + k * (LIVE / 3) + j }));
          const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(batch) });
          expect(res.ok).toBe(true);
          await new Promise((r) => setTimeout(r, 200));
        }
        const result = await py.result();
        expect(result).toEqual({ live: Array.from({ length: LIVE }, (_, i) => 20 + i) });
      } finally {
        py.kill();
      }
    });
  }
});
