/**
 * The Python example (examples/python) publishes and subscribes over gRPC with code generated from
 * proto/ — proof that any gRPC language works. CI installs its requirements and sets
 * REQUIRE_PYTHON_EXAMPLE=1, so there it cannot be skipped; elsewhere it runs when grpcio-tools is
 * installed.
 */
import { spawnSync, spawn } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, startTestServer } from "./support/server.js";

const available = spawnSync("python3", ["-c", "import grpc, grpc_tools"]).status === 0;
const required = process.env["REQUIRE_PYTHON_EXAMPLE"] === "1";

let app: App;
beforeAll(async () => {
  app = await startTestServer();
});
afterAll(async () => app?.close());

it.skipIf(!available && !required)("publishes and subscribes from Python over gRPC", async () => {
  expect(available, "python3 with grpcio and grpcio-tools (pip install -r examples/python/requirements.txt)").toBe(true);
  const target = new URL(app.url).host;
  const child = spawn("python3", ["examples/python/events_client.py", "--target", target, "--project", "py", "--topic", "from-python", "--count", "5"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  expect(code, err).toBe(0);
  const lines = out.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines.slice(0, 5).map((l) => [l["sequence"], l["event_type"], l["data"]])).toEqual([0, 1, 2, 3, 4].map((i) => [i + 1, "python.demo", `hello ${i}`]));
  expect(lines[5]).toEqual({ published: 5, received: 5, in_order: true });
  // The service stored them in the project the client named.
  const page = await client(StreamService, app, "grpc").listEvents({ stream: { kind: StreamKind.TOPIC, key: "from-python" } }, { headers: { "x-project-id": "py" } });
  expect(page.events.map((e) => e.data?.kind.value)).toEqual([0, 1, 2, 3, 4].map((i) => `hello ${i}`));
}, 60_000);
