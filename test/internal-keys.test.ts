/**
 * Keys the service derives live where no client can write (issue 18, item 5). For every reserved
 * prefix, a client's publish with such a key is refused on each surface that takes client keys
 * (StreamService.Publish in every protocol's codec, TerminalUse's idempotency_key, /v1/log), and
 * the service's own use of the key still works: a Sailhouse scheduled send whose id a client
 * learnt at once (and tried to pre-empt with `sailhouse:<id>`) is appended when due, with its data.
 * Both stores.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectError } from "@connectrpc/connect";
import { SailhouseClient } from "@sailhouse/client";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { INTERNAL_KEY_PREFIX, SAILHOUSE_SEND_KEY_PREFIX, SAILHOUSE_WAITGROUP_KEY_PREFIX } from "../src/core/types.js";
import type { App } from "../src/server/app.js";
import { client, postJson, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const PREFIXES = [INTERNAL_KEY_PREFIX, SAILHOUSE_SEND_KEY_PREFIX, SAILHOUSE_WAITGROUP_KEY_PREFIX];
const P = { "x-project-id": "acme" };
let n = 0;

for (const factory of storeFactories) {
  describe(`reserved idempotency keys on the ${factory.name} store`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), workerIntervalMs: 50 });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    for (const prefix of PREFIXES) {
      it(`refuses ${JSON.stringify(prefix)} from clients on every surface that takes keys, storing nothing`, async () => {
        const key = `${prefix}${crypto.randomUUID()}`;
        const topic = `keys-${++n}`;
        const rpc = client(StreamService, app, "grpc");
        const err = await rpc.publish({ stream: { kind: StreamKind.TOPIC, key: topic }, events: [{ eventType: "x", idempotencyKey: key }] }, { headers: P }).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err?.code).toBe(3); // invalid_argument
        expect(err?.rawMessage).toContain(`may not start with ${JSON.stringify(prefix)}`);
        const log = await fetch(`${app.url}/v1/log/topic/${topic}`, { method: "POST", headers: { ...P, "content-type": "application/json" }, body: JSON.stringify({ type: "x", data: 1, idempotency_key: key }) });
        expect(log.status).toBe(400);
        expect(await log.text()).toContain(JSON.stringify(prefix));
        const task = await postJson(app, "/tasks", { agent_name: "acme/keys" }, P);
        expect(task.status).toBe(201);
        const tu = await postJson(app, `/tasks/${task.json.id}/events`, { content: { type: "text", text: "hi" }, idempotency_key: key }, P);
        expect(tu.status).toBe(422);
        expect(tu.json.detail.map((d: { msg: string }) => d.msg).join(" ")).toContain(JSON.stringify(prefix));
        // Nothing was stored on either stream.
        const listed = await rpc.listEvents({ stream: { kind: StreamKind.TOPIC, key: topic } }, { headers: P });
        expect(listed.events).toEqual([]);
        const tuEvents = await fetch(`${app.url}/events?task_id=${task.json.id}`, { headers: P });
        expect(await tuEvents.json()).toEqual([]);
      });
    }

    it("a scheduled send cannot be pre-empted through its id: the send is appended when due, with its data, and its key is not shown", async () => {
      const sh = new SailhouseClient("test-key", { api_url: app.url });
      const topic = `scheduled-${++n}`;
      await sh.pull(topic, "s"); // the subscription exists before the send
      const sent = await sh.publish(topic, { mine: true }, { send_at: new Date(Date.now() + 300) });
      const rpc = client(StreamService, app, "connect");
      const err = await rpc.publish({ stream: { kind: StreamKind.TOPIC, key: topic }, events: [{ eventType: "", idempotencyKey: `${SAILHOUSE_SEND_KEY_PREFIX}${sent.id}` }] }, { headers: { "x-project-id": "default" } }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(3);
      let got: { id: string; data: unknown } | null = null;
      for (let i = 0; i < 400 && !got; i++) {
        got = await sh.pull<{ mine: boolean }>(topic, "s");
        if (!got) await new Promise((r) => setTimeout(r, 25));
      }
      expect(got?.id).toBe(sent.id);
      expect(got?.data).toEqual({ mine: true });
      const listed = await rpc.listEvents({ stream: { kind: StreamKind.TOPIC, key: topic } }, { headers: { "x-project-id": "default" } });
      expect(listed.events.map((e) => [e.id, e.idempotencyKey ?? ""])).toEqual([[sent.id, ""]]);
    });
  });
}
