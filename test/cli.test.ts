/** The command-line client against the real service: publish in each dialect, list, tail. */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { postJson, startTestServer } from "./support/server.js";

let app: App;
beforeAll(async () => {
  app = await startTestServer();
});
afterAll(async () => app?.close());

function cli(args: string[], opts: { untilLines?: number } = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { env: { ...process.env, EVENTS_URL: app.url, EVENTS_PROJECT: "cli" }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (opts.untilLines && out.trim().split("\n").length >= opts.untilLines) child.kill("SIGINT");
    });
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

it("publishes through each dialect, lists streams, and tails a stream until Ctrl-C", async () => {
  const polos = await cli(["publish", "polos", "orders", '{"id":1}', "--type", "created"]);
  expect(polos.code, polos.err).toBe(0);
  expect(JSON.parse(polos.out)).toMatchObject({ sequence_ids: [1] });
  const kubiya = await cli(["publish", "kubiya", "ex-1", '{"tool":"ls"}', "--type", "tool"]);
  expect(JSON.parse(kubiya.out)).toEqual({ success: true, execution_id: "ex-1", event_type: "tool" });
  const sailhouse = await cli(["publish", "sailhouse", "orders", '{"id":2}', "--protocol", "connect"]);
  expect(JSON.parse(sailhouse.out).id).toMatch(/^[0-9a-f-]{36}$/);
  const task = await postJson(app, "/tasks", { agent_name: "ns/agent" }, { "X-Project-ID": "cli" });
  const tu = await cli(["publish", "terminaluse", task.json.id, '"hello"']);
  expect(JSON.parse(tu.out)).toMatchObject({ sequence_id: 1, task_id: task.json.id });
  const bad = await cli(["publish", "kubiya", "ex-1", "[1]"]);
  expect(bad.code).toBe(1);
  expect(bad.err).toMatch(/must be a JSON object/);
  const missing = await cli(["publish", "terminaluse", "no-such-task", '"x"']);
  expect(missing.err).toMatch(/NotFound/);

  const streams = await cli(["streams", "--json"]);
  expect(streams.out.trim().split("\n").map((l) => JSON.parse(l))).toEqual(
    expect.arrayContaining([
      { kind: "topic", key: "orders", last_sequence: 2, events: 2 },
      { kind: "execution", key: "ex-1", last_sequence: 1, events: 1 },
      { kind: "task", key: task.json.id, last_sequence: 1, events: 1 },
    ]),
  );

  const tail = await cli(["tail", "topic/orders", "--from", "0"], { untilLines: 2 });
  expect(tail.code).toBe(0); // Ctrl-C ends it cleanly
  const lines = tail.out.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.map((l) => [l.sequence, l.event_type ?? ""])).toEqual([
    ["1", "created"],
    ["2", ""],
  ]);
  expect(tail.err).toBe(""); // not a TTY: no progress line
  const help = await cli(["--help"]);
  expect(help.out).toMatch(/publish \[options\] <dialect> <stream> <json>/);
}, 60_000);

it("creates, lists and revokes API keys through the admin RPC", async () => {
  const secured = await startTestServer({ env: { AUTH: "required", ADMIN_TOKEN: "op-token", AUTH_CACHE_MS: "0" } });
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "--url", secured.url, ...args], { env: { ...process.env, ADMIN_TOKEN: "op-token", ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      child.on("exit", (code) => resolve({ code, out, err }));
    });
  try {
    const created = await run(["keys", "create", "--project", "acme", "--name", "ci"]);
    expect(created.code, created.err).toBe(0);
    const key = JSON.parse(created.out) as { id: string; key: string; project: string };
    expect(key.project).toBe("acme");
    expect((await postJson(secured, "/api/v1/events/publish", { topic: "t", events: [{ data: 1 }] }, { authorization: `Bearer ${key.key}` })).status).toBe(200);
    const listed = await run(["--project", "acme", "keys", "list"]);
    expect(listed.out.trim().split("\n").map((l) => JSON.parse(l).id)).toEqual([key.id]);
    expect(listed.out).not.toContain(key.key);
    expect(JSON.parse((await run(["keys", "revoke", key.id])).out)).toEqual({ id: key.id, revoked: true });
    expect((await postJson(secured, "/api/v1/events/publish", { topic: "t", events: [{ data: 2 }] }, { authorization: `Bearer ${key.key}` })).status).toBe(401);
    const noToken = await run(["keys", "list"], { ADMIN_TOKEN: "" });
    expect(noToken.code).toBe(1);
    expect(noToken.err).toMatch(/ADMIN_TOKEN/);
  } finally {
    await secured.close();
  }
}, 60_000);
