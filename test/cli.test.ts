/**
 * The `agent-events` bin (the built file package.json names, run as an executable: its shebang)
 * against the real service: publish in each dialect and from stdin, read, tail, --count, --raw,
 * Durable Streams, tables, pipes, --version and the exit codes of docs/cli.md.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { EXIT } from "../src/cli/exit.js";
import { postJson, startTestServer } from "./support/server.js";
import { built, freePort, run, type Exited } from "./support/process.js";
import { eventually } from "./support/raw.js";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string; bin: Record<string, string> };
const bin = () => built(pkg.bin["agent-events"]!.replace(/^dist\//, ""));

let app: App;
beforeAll(async () => {
  app = await startTestServer();
});
afterAll(async () => app?.close());

function cli(args: string[], opts: { env?: Record<string, string>; input?: string } = {}): Promise<Exited> {
  return run(bin(), args, { env: { ...process.env, EVENTS_URL: app.url, EVENTS_PROJECT: "cli", ...opts.env }, ...(opts.input !== undefined ? { input: opts.input } : {}) });
}

const jsonLines = (out: string) =>
  out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));

/** Runs `tail` until `lines` lines came, then Ctrl-C (SIGINT), as a user at a terminal would. */
function tailUntil(args: string[], lines: number, onStarted?: () => Promise<void>): Promise<Exited> {
  return new Promise((resolve) => {
    const child = spawn(bin(), args, { env: { ...process.env, EVENTS_URL: app.url, EVENTS_PROJECT: "cli" }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      if (stdout.split("\n").length > lines) child.kill("SIGINT");
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    void onStarted?.();
  });
}

it("is an executable with --version, and a usage error exits 2 with one hint", async () => {
  const v = await cli(["--version"]);
  expect(v).toMatchObject({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
  const bad = await cli(["bogus"]);
  expect(bad.code).toBe(EXIT.usage);
  expect(bad.stdout).toBe("");
  expect(bad.stderr).toMatch(/unknown command 'bogus'/);
  const help = await cli(["--help"]);
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/publish \[options\] <dialect> <stream> \[data\]/);
  expect(help.stdout).toMatch(/Exit codes: 0 ok, 1 refused\/other, 2 usage, 3 not found,\s+4 unauthenticated, 5 unavailable/);
});

it("publishes through each dialect, lists streams as a table and as JSON, reads and tails", async () => {
  const polos = await cli(["publish", "polos", "orders", '{"id":1}', "--type", "created"]);
  expect(polos.code, polos.stderr).toBe(0);
  expect(JSON.parse(polos.stdout)).toMatchObject({ sequence_ids: [1] });
  const kubiya = await cli(["publish", "kubiya", "ex-1", '{"tool":"ls"}', "--type", "tool"]);
  expect(JSON.parse(kubiya.stdout)).toEqual({ success: true, execution_id: "ex-1", event_type: "tool" });
  const sailhouse = await cli(["--protocol", "connect", "publish", "sailhouse", "orders", '{"id":2}']);
  expect(JSON.parse(sailhouse.stdout).id).toMatch(/^[0-9a-f-]{36}$/);
  const task = await postJson(app, "/tasks", { agent_name: "ns/agent" }, { "X-Project-ID": "cli" });
  const tu = await cli(["publish", "terminaluse", task.json.id, '"hello"']);
  expect(JSON.parse(tu.stdout)).toMatchObject({ sequence_id: 1, task_id: task.json.id });

  const streams = await cli(["streams", "--json"]);
  expect(jsonLines(streams.stdout)).toEqual(
    expect.arrayContaining([
      { kind: "topic", key: "orders", last_sequence: 2, events: 2 },
      { kind: "execution", key: "ex-1", last_sequence: 1, events: 1 },
      { kind: "task", key: task.json.id, last_sequence: 1, events: 1 },
    ]),
  );
  // A table: a header, aligned columns, numbers right-aligned, no index column.
  const table = (await cli(["streams", "--kind", "topic"])).stdout.split("\n");
  expect(table[0]).toMatch(/^KIND +KEY +LAST_SEQUENCE +EVENTS$/);
  expect(table[1]).toMatch(/^topic +orders +2 +2$/);
  expect(table[1]!.length).toBe(table[0]!.length);
  expect(table.join("\n")).not.toMatch(/index|[│┌]/);

  // read: what is there, then exit; --raw: the data only.
  const read = await cli(["read", "topic/orders"]);
  expect(read.code).toBe(0);
  expect(jsonLines(read.stdout).map((e) => [e.sequence, e.event_type ?? "", e.data])).toEqual([
    ["1", "created", { id: 1 }],
    ["2", "", { id: 2 }],
  ]);
  expect((await cli(["read", "orders", "--raw", "--type", "created"])).stdout).toBe('{"id":1}\n');
  expect((await cli(["read", "topic/orders", "--from", "1", "--raw"])).stdout).toBe('{"id":2}\n');
  expect((await cli(["tail", "topic/orders", "--no-follow", "--raw"])).stdout).toBe('{"id":1}\n{"id":2}\n');
  expect((await cli(["read", "task/" + task.json.id, "--raw"])).stdout).toBe('{"type":"text","text":"hello"}\n');

  // tail follows until Ctrl-C (exit 0); --count stops by itself; never a progress line in a pipe.
  const tail = await tailUntil(["tail", "topic/orders", "--from", "0"], 2);
  expect(tail.code).toBe(0);
  expect(jsonLines(tail.stdout).map((l) => l.sequence)).toEqual(["1", "2"]);
  expect(tail.stderr).toBe("");
  const counted = await cli(["tail", "orders", "--from", "0", "--count", "1", "--raw"]);
  expect(counted).toMatchObject({ code: 0, stdout: '{"id":1}\n', stderr: "" });
  // Without --from, only new events: the publish comes after the tail started.
  const live = await tailUntil(["tail", "topic/live-one"], 1, async () => {
    await eventually(async () => /^subscribers 1$/m.test(await (await fetch(`${app.url}/metrics`)).text()), 60_000, "the tail's subscription");
    await postJson(app, "/api/v1/events/publish", { topic: "live-one", events: [{ event_type: "t", data: "new" }] }, { "X-Project-ID": "cli" });
  });
  expect(jsonLines(live.stdout).map((e) => e.data)).toEqual(["new"]);
});

it("publishes one event per line of stdin, in order, and stops at a bad line naming it", async () => {
  const ok = await cli(["publish", "polos", "from-stdin"], { input: '{"n":1}\n\n{"n":2}\n[3]\n' });
  expect(ok.code, ok.stderr).toBe(0);
  expect(jsonLines(ok.stdout).map((r) => r.sequence_ids)).toEqual([[1], [2], [3]]);
  const bad = await cli(["publish", "kubiya", "ex-stdin", "-"], { input: '{"a":1}\n[1]\n{"a":3}\n' });
  expect(bad.code).toBe(EXIT.usage);
  expect(jsonLines(bad.stdout)).toHaveLength(1);
  expect(bad.stderr).toBe("agent-events: stdin line 2: kubiya data must be a JSON object\n");
  expect((await cli(["read", "from-stdin", "--raw"])).stdout).toBe('{"n":1}\n{"n":2}\n[3]\n');
});

it("publishes to and tails Durable Streams: JSON messages (an array stays one message) and raw bytes", async () => {
  const missing = await cli(["publish", "durable", "chat", '{"a":1}']);
  expect(missing.code).toBe(EXIT.notFound);
  expect(missing.stderr).toMatch(/durable stream "chat" not found \(publish --create makes it\)/);
  const first = await cli(["publish", "durable", "chat", '{"a":1}', "--create"]);
  expect(first.code, first.stderr).toBe(0);
  const offsets: string[] = [JSON.parse(first.stdout).next_offset];
  const more = await cli(["publish", "durable", "chat"], { input: '[1,2]\n"s"\n' });
  offsets.push(...jsonLines(more.stdout).map((r) => r.next_offset as string));
  // The protocol's offsets: fixed width, so byte order is stream order.
  for (const o of offsets) expect(o).toMatch(/^\d{16}_\d{16}$/);
  expect([...offsets].sort()).toEqual(offsets);
  expect(new Set(offsets).size).toBe(3);
  expect((await cli(["read", "durable/chat", "--raw"])).stdout).toBe('{"a":1}\n[1,2]\n"s"\n');
  const text = await cli(["publish", "durable", "notes", "line one", "--create", "--content-type", "text/plain"]);
  expect(text.code, text.stderr).toBe(0);
  const tail = await cli(["tail", "durable/notes", "--from", "0", "--count", "1", "--raw"]);
  expect(tail).toMatchObject({ code: 0, stdout: "line one\n", stderr: "" });
  const full = JSON.parse((await cli(["tail", "durable/notes", "--from", "0", "--count", "1"])).stdout);
  expect(full).toMatchObject({ event_type: "text/plain", payload: Buffer.from("line one").toString("base64") });
  expect((await cli(["read", "durable/none"])).code).toBe(EXIT.notFound);
});

it("pipes cleanly: `tail | head -1` prints one line and no error, and the tail ends", async () => {
  const topic = `piped-${Date.now()}`;
  for (let i = 0; i < 3; i++) await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: i }] }, { "X-Project-ID": "cli" });
  const child = spawn("bash", ["-c", `set -o pipefail; "${bin()}" tail ${topic} --from 0 --raw | head -1`], { env: { ...process.env, EVENTS_URL: app.url, EVENTS_PROJECT: "cli" }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  // head has gone once its line is out; the tail notices at its next write (EPIPE), as `yes` does.
  while (!stdout.includes("\n")) await new Promise((r) => setTimeout(r, 20));
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  for (let i = 3; code === undefined; i++) {
    await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: i }] }, { "X-Project-ID": "cli" });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 100))]);
  }
  expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: "0\n", stderr: "" });
});

describe("exit codes", () => {
  let secured: App;
  let closedPort: number;
  beforeAll(async () => {
    secured = await startTestServer({ env: { AUTH: "required", API_KEYS: "acme:right-key" } });
    closedPort = await freePort();
  });
  afterAll(async () => secured?.close());

  const cases: { name: string; args: () => string[]; code: number; stderr: RegExp }[] = [
    { name: "bad JSON", args: () => ["publish", "polos", "t", "{nope"], code: EXIT.usage, stderr: /not valid JSON/ },
    { name: "an unknown stream kind", args: () => ["read", "topics/t"], code: EXIT.usage, stderr: /unknown stream kind/ },
    { name: "a bad --count", args: () => ["tail", "t", "--count", "0"], code: EXIT.usage, stderr: /a positive integer/ },
    { name: "a missing stream", args: () => ["read", "topic/never-published"], code: EXIT.notFound, stderr: /stream topic\/never-published not found/ },
    { name: "a missing task", args: () => ["publish", "terminaluse", "no-such-task", '"x"'], code: EXIT.notFound, stderr: /NotFound/ },
    { name: "no key", args: () => ["--url", secured.url, "streams"], code: EXIT.unauthenticated, stderr: /Unauthenticated: .*\(--key, EVENTS_API_KEY\)/ },
    { name: "a wrong key", args: () => ["--url", secured.url, "--key", "wrong", "publish", "durable", "x", "1"], code: EXIT.unauthenticated, stderr: /HTTP 401/ },
    { name: "no service", args: () => ["--url", `http://127.0.0.1:${closedPort}`, "streams"], code: EXIT.unavailable, stderr: /cannot reach the service at .*ECONNREFUSED/ },
    { name: "data the dialect does not take", args: () => ["publish", "kubiya", "ex-1", "[1]"], code: EXIT.usage, stderr: /kubiya data must be a JSON object/ },
  ];
  for (const c of cases) {
    it(`${c.name}: exit ${c.code}, one line on stderr, nothing on stdout`, async () => {
      const r = await cli(c.args(), { env: { EVENTS_PROJECT: "" } });
      expect(r.code, r.stderr).toBe(c.code);
      expect(r.stdout).toBe("");
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(c.stderr);
    });
  }

  it("with the right key, the same commands work", async () => {
    const r = await cli(["--url", secured.url, "--key", "right-key", "publish", "polos", "t", "1"], { env: { EVENTS_PROJECT: "" } });
    expect(r.code, r.stderr).toBe(0);
    const t = await cli(["--url", secured.url, "streams"], { env: { EVENTS_PROJECT: "", EVENTS_API_KEY: "right-key" } });
    expect(t.stdout).toMatch(/^topic +t +1 +1$/m);
  });
});

it("creates, lists and revokes API keys through the admin RPC", async () => {
  const secured = await startTestServer({ env: { AUTH: "required", ADMIN_TOKEN: "op-token", AUTH_CACHE_MS: "0" } });
  const keys = (args: string[], env: Record<string, string> = {}) => run(bin(), ["--url", secured.url, ...args], { env: { ...process.env, ADMIN_TOKEN: "op-token", ...env } });
  try {
    const created = await keys(["keys", "create", "--project", "acme", "--name", "ci"]);
    expect(created.code, created.stderr).toBe(0);
    const key = JSON.parse(created.stdout) as { id: string; key: string; project: string };
    expect(key.project).toBe("acme");
    expect((await postJson(secured, "/api/v1/events/publish", { topic: "t", events: [{ data: 1 }] }, { authorization: `Bearer ${key.key}` })).status).toBe(200);
    const listed = await keys(["--project", "acme", "keys", "list", "--json"]);
    expect(jsonLines(listed.stdout).map((k) => k.id)).toEqual([key.id]);
    expect(listed.stdout).not.toContain(key.key);
    const table = (await keys(["keys", "list"])).stdout;
    expect(table).toMatch(new RegExp(`^ID +PROJECT +NAME +CREATED_AT +EXPIRES_AT +REVOKED_AT\\n${key.id} +acme +ci +\\S+ *\\n$`));
    // --expires-in: the key carries its expiry (the service refuses it from then on: test/stream-auth.test.ts).
    const expiring = await keys(["keys", "create", "--project", "acme", "--name", "short", "--expires-in", "2h"]);
    expect(expiring.code, expiring.stderr).toBe(0);
    const exp = JSON.parse(expiring.stdout) as { id: string; expires_at: string };
    expect(Date.parse(exp.expires_at) - Date.now()).toBeGreaterThan(7000_000);
    expect(jsonLines((await keys(["--project", "acme", "keys", "list", "--json"])).stdout).find((k) => k.id === exp.id)).toMatchObject({ name: "short", expires_at: exp.expires_at });
    const badDuration = await keys(["keys", "create", "--project", "acme", "--expires-in", "soon"]);
    expect(badDuration.code).toBe(EXIT.usage);
    expect(badDuration.stderr).toMatch(/--expires-in/);
    expect(JSON.parse((await keys(["keys", "revoke", key.id])).stdout)).toEqual({ id: key.id, revoked: true });
    expect((await keys(["keys", "revoke", key.id])).code).toBe(EXIT.notFound);
    expect((await postJson(secured, "/api/v1/events/publish", { topic: "t", events: [{ data: 2 }] }, { authorization: `Bearer ${key.key}` })).status).toBe(401);
    const noToken = await keys(["keys", "list"], { ADMIN_TOKEN: "" });
    expect(noToken.code).toBe(EXIT.usage);
    expect(noToken.stderr).toMatch(/ADMIN_TOKEN/);
  } finally {
    await secured.close();
  }
});
