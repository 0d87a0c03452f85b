/**
 * One name rule for every surface (src/core/names.ts), with generated names: a name one surface
 * accepts at creation is reachable under that same name on every other surface that serves it, and
 * a name that could not be is refused at creation with the dialect's error (never a 5xx). A created
 * Durable Stream's Location points at that stream. Names are API-layer input, the same on every
 * store: the memory store keeps the generated runs fast.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { isIdentifier, nameProblem, namePath } from "../src/core/names.js";
import type { App } from "../src/server/app.js";
import { client, getJson, postJson, startTestServer } from "./support/server.js";

const P = { "X-Project-ID": "names" };
const h = { headers: { "x-project-id": "names" } };

/** Names built from the parts that break URLs (dot segments, empty segments, escapes, controls) and ordinary ones. */
const segment = fc.oneof(
  fc.constantFrom("", ".", "..", "...", ".a", "a.", "%2e", "%2E%2e", "%2F", "~", "@:+=", "-_", "é", "😀", " ", "\u0000", "\u001f", "\u007f", "\u0085", "?", "#", "%", "\\", "a b"),
  fc.stringMatching(/^[A-Za-z0-9_.:@~+=-]{1,8}$/),
);
const name = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => parts.join("/"));

let n = 0;

describe("one name rule on every surface", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer();
  });
  afterAll(async () => app?.close());

  it("the rule itself: dot and empty segments, controls and lone surrogates are refused; identifiers are a subset", () => {
    for (const bad of ["", ".", "..", "a/..", "../a", "a/./b", "a//b", "/a", "a/", "a\u0000", "a\u0085", "x\ud800", "x".repeat(1025)]) expect(nameProblem(bad), JSON.stringify(bad)).toBeDefined();
    for (const good of ["a", "a/b", "...", "a..b", ".a/b.", "é/😀", "%2e%2e", "a b"]) expect(nameProblem(good), good).toBeUndefined();
    fc.assert(fc.property(name, (v) => !isIdentifier(v) || nameProblem(v) === undefined));
    // The path form decodes back to the name, segment by segment.
    fc.assert(fc.property(name.filter((v) => nameProblem(v) === undefined), (v) => namePath(v).split("/").map(decodeURIComponent).join("/") === v));
  });

  it("a Durable Stream is created only under a name every URL keeps, and its Location reaches it", async () => {
    await fc.assert(
      fc.asyncProperty(name, async (v) => {
        const marker = `m${++n}`;
        // The whole name percent-encoded (slashes too): it reaches the server exactly as generated.
        const put = await fetch(`${app.url}/v1/stream/${encodeURIComponent(v)}`, { method: "PUT", headers: { ...P, "content-type": "text/plain" } });
        if (put.status !== 201 && put.status !== 200) {
          expect(put.status, `${JSON.stringify(v)}: ${put.status}`).toBeGreaterThanOrEqual(400);
          expect(put.status, JSON.stringify(v)).toBeLessThan(500);
          // Refused (or never reached the route: a whole-name "." or ".." is resolved away by URL parsing).
          expect(nameProblem(v), JSON.stringify(v)).toBeDefined();
          return;
        }
        expect(nameProblem(v), JSON.stringify(v)).toBeUndefined();
        const location = put.headers.get("location");
        if (put.status === 201) expect(location).toBe(`${app.url}/v1/stream/${namePath(v)}`);
        // The stream at the Location is the one just created: what is appended there is read back.
        const at = location ?? `${app.url}/v1/stream/${namePath(v)}`;
        expect((await fetch(at, { method: "POST", headers: { ...P, "content-type": "text/plain" }, body: marker })).status).toBe(204);
        const read = await fetch(`${app.url}/v1/stream/${encodeURIComponent(v)}?offset=-1`, { headers: P });
        expect(read.status).toBe(200);
        expect(await read.text()).toContain(marker);
      }),
      { numRuns: 60 },
    );
  });

  it("a topic or execution created on one surface is reachable under the same name on the others", async () => {
    const rpc = client(StreamService, app, "connect");
    await fc.assert(
      fc.asyncProperty(name, fc.constantFrom("polos", "sailhouse", "kubiya", "rpc"), async (v, via) => {
        const marker = `m${++n}`;
        const kind = via === "kubiya" ? "execution" : "topic";
        let status: number;
        if (via === "polos") status = (await postJson(app, "/api/v1/events/publish", { topic: v, events: [{ data: { marker } }] }, P)).status;
        else if (via === "sailhouse") status = (await postJson(app, `/topics/${encodeURIComponent(v)}/events`, { data: { marker } }, P)).status;
        else if (via === "kubiya") status = (await postJson(app, `/api/v1/executions/${encodeURIComponent(v)}/events`, { event_type: "t", data: { marker } }, P)).status;
        else
          status = await rpc.publish({ stream: { kind: StreamKind.TOPIC, key: v }, events: [{ eventType: "t", data: { kind: { case: "structValue", value: { fields: { marker: { kind: { case: "stringValue", value: marker } } } } as never } } }] }, h).then(
            () => 200,
            () => 400,
          );
        if (status >= 300) {
          // Refused with the dialect's bad-input answer; only names that break some surface are. (A
          // whole "." or ".." in a path is resolved away before it is sent: another route answers.)
          const unsendable = (via === "sailhouse" || via === "kubiya") && (v === "." || v === "..");
          if (unsendable) expect(status, `${via} ${JSON.stringify(v)}: ${status}`).toBeLessThan(500);
          else expect([400, 404, 422], `${via} ${JSON.stringify(v)}: ${status}`).toContain(status);
          expect(isIdentifier(v), `${via} refused ${JSON.stringify(v)}`).toBe(false);
          return;
        }
        expect(isIdentifier(v), `${via} accepted ${JSON.stringify(v)}`).toBe(true);
        const view = await fetch(`${app.url}/v1/log/${kind}/${namePath(v)}?offset=-1`, { headers: P });
        expect(view.status, `/v1/log/${kind}/${namePath(v)}`).toBe(200);
        expect(await view.text()).toContain(marker);
        const listed = await rpc.listEvents({ stream: { kind: kind === "topic" ? StreamKind.TOPIC : StreamKind.EXECUTION, key: v } }, h);
        // (A name may come up twice in a run: the marker tells this run's event.)
        expect(JSON.stringify(listed.events.map((e) => e.data))).toContain(marker);
        if (kind === "topic") {
          const polos = await getJson(app, `/api/v1/events?topic=${encodeURIComponent(v)}`, P);
          expect(JSON.stringify(polos.json.events)).toContain(marker);
        }
      }),
      { numRuns: 80 },
    );
  });

  it("a task name is an identifier, so the task is reachable at /tasks/name/{name}", async () => {
    await fc.assert(
      fc.asyncProperty(name, async (v) => {
        const created = await postJson(app, "/tasks", { agent_name: "ns/a", name: v }, P);
        if (created.status !== 201) {
          expect(created.status, JSON.stringify(v)).toBe(422);
          expect(created.json.detail[0].loc).toEqual(["body", "name"]);
          expect(isIdentifier(v)).toBe(false);
          return;
        }
        expect(isIdentifier(v)).toBe(true);
        const got = await getJson(app, `/tasks/name/${encodeURIComponent(v)}`, P);
        expect(got.status).toBe(200);
        expect(got.json.id).toBe(created.json.id);
      }),
      { numRuns: 40 },
    );
  });
});
