/**
 * `@durable-streams/client` 0.2.7 (the newest) and 0.2.6 (the version every other ecosystem
 * package pins; installed as `ds-client-026`), through their public API as an application uses
 * them, on this service (memory and MongoDB stores) and on the reference server:
 * - a reader that goes away and resumes from the offset it reached, while a writer appends;
 * - an `IdempotentProducer` burst of 5,000 appends, in one request and as many requests in flight;
 * - a burst of un-awaited `DurableStream.append` calls (the handle merges everything queued behind
 *   its one in-flight POST into one JSON array);
 * - close: the final message lands, live readers end, later appends are refused.
 * Every scenario reads the stream back and compares values, not statuses.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as client027 from "@durable-streams/client";
import * as client026 from "ds-client-026";
import { startTarget, targets, uniqueName, until, type ClientTarget } from "./targets.js";

type Client = typeof client027;
const clients: { version: string; lib: Client }[] = [
  { version: "0.2.7", lib: client027 },
  { version: "0.2.6", lib: client026 as unknown as Client },
];

const BURST = 5000;

describe.each(targets)("@durable-streams/client on $name", ({ name }) => {
  let target: ClientTarget;
  beforeAll(async () => {
    target = await startTarget(name);
  });
  afterAll(async () => {
    await target?.stop();
  });
  const urlOf = (stream: string): string => `${target.url}/v1/stream/${stream}`;

  describe.each(clients)("client $version", ({ version, lib }) => {
    const { DurableStream, IdempotentProducer } = lib;
    const readAll = async <T>(url: string): Promise<T[]> => (await lib.stream<T>({ url, offset: "-1", live: false })).json();

    it("a reader that goes away resumes from the offset it reached: nothing lost, nothing repeated", async () => {
      const url = urlOf(uniqueName(`resume-${version}`));
      const handle = await DurableStream.create({ url, contentType: "application/json" });
      const total = 120;
      const writer = (async () => {
        for (let i = 0; i < total; i++) {
          await handle.append(JSON.stringify({ i }));
          if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
        }
        await handle.close();
      })();
      // First reader: live over SSE until it has 40 messages, then the page goes away.
      const first: number[] = [];
      const abort = new AbortController();
      const r1 = await lib.stream<{ i: number }>({ url, offset: "-1", live: "sse", signal: abort.signal });
      let resumeAt = "";
      await new Promise<void>((resolve) => {
        r1.subscribeJson((batch) => {
          if (resumeAt) return;
          first.push(...batch.items.map((m) => m.i));
          if (first.length >= 40) {
            resumeAt = batch.offset;
            abort.abort();
            resolve();
          }
        });
      });
      // Second reader: long-poll from that offset to the end of the stream (the writer closes it).
      const second: number[] = [];
      const r2 = await lib.stream<{ i: number }>({ url, offset: resumeAt, live: "long-poll" });
      r2.subscribeJson((batch) => {
        second.push(...batch.items.map((m) => m.i));
      });
      await writer;
      await until(() => r2.streamClosed, () => `${first.length} + ${second.length} of ${total}`);
      expect([...first, ...second]).toEqual(Array.from({ length: total }, (_, i) => i));
      // A third reader resumes from the first one's offset with the handle API and catch-up only.
      const rest = await (await new DurableStream({ url }).stream<{ i: number }>({ offset: resumeAt, live: false })).json();
      expect(rest.map((m) => m.i)).toEqual(second);
    });

    for (const shape of [
      { label: "one request", opts: {} },
      { label: "many requests in flight", opts: { maxBatchBytes: 8 * 1024, maxInFlight: 5, lingerMs: 1 } },
    ]) {
      it(`IdempotentProducer: a burst of ${BURST} appends (${shape.label}) lands once each, in order`, async () => {
        const url = urlOf(uniqueName(`burst-${version}`));
        const handle = await DurableStream.create({ url, contentType: "application/json" });
        const errors: Error[] = [];
        const producer = new IdempotentProducer(handle, `writer-${version}`, { epoch: 0, onError: (e) => errors.push(e), ...shape.opts });
        for (let i = 0; i < BURST; i++) producer.append(JSON.stringify({ i, text: `token ${i}` }));
        await producer.flush();
        expect(errors.map(String)).toEqual([]);
        // A second burst while the first one's requests could still be retried: sequences continue.
        for (let i = BURST; i < BURST + 100; i++) producer.append(JSON.stringify({ i, text: `token ${i}` }));
        const closed = await producer.close(JSON.stringify({ i: BURST + 100, text: "done" }));
        expect(errors.map(String)).toEqual([]);
        expect(closed.finalOffset).not.toBe("");
        const all = await readAll<{ i: number; text: string }>(url);
        expect(all.length).toBe(BURST + 101);
        expect(all.map((m) => m.i)).toEqual(Array.from({ length: BURST + 101 }, (_, i) => i));
        expect(all[BURST - 1]).toEqual({ i: BURST - 1, text: `token ${BURST - 1}` });
        const head = await handle.head();
        expect(head.exists && head.streamClosed).toBe(true);
      });
    }

    it("DurableStream.append: 3,000 un-awaited appends (merged behind one in-flight request) all land in order", async () => {
      const url = urlOf(uniqueName(`append-burst-${version}`));
      const handle = await DurableStream.create({ url, contentType: "application/json" });
      const n = 3000;
      await Promise.all(Array.from({ length: n }, (_, i) => handle.append(JSON.stringify({ i }))));
      const all = await readAll<{ i: number }>(url);
      expect(all.map((m) => m.i)).toEqual(Array.from({ length: n }, (_, i) => i));
    });

    it("close: the final message lands, a live reader sees the end, later appends are refused", async () => {
      const url = urlOf(uniqueName(`close-${version}`));
      const handle = await DurableStream.create({ url, contentType: "application/json" });
      await handle.append(JSON.stringify({ n: 1 }));
      const seen: unknown[] = [];
      const live = await lib.stream({ url, offset: "-1", live: "sse" });
      live.subscribeJson((batch) => {
        seen.push(...batch.items);
      });
      await until(() => seen.length === 1);
      const result = await handle.close({ body: JSON.stringify({ n: 2, last: true }) });
      expect(result.finalOffset).not.toBe("");
      await until(() => live.streamClosed, () => JSON.stringify(seen));
      await live.closed;
      expect(seen).toEqual([{ n: 1 }, { n: 2, last: true }]);
      const refused = await handle.append(JSON.stringify({ n: 3 })).then(
        () => undefined,
        (e: unknown) => e,
      );
      // The handle's fetch surfaces the 409 as a FetchError whose headers say the stream is closed.
      expect(refused).toBeInstanceOf(lib.FetchError);
      const err = refused as InstanceType<Client["FetchError"]>;
      expect(err.status).toBe(409);
      expect(Object.entries(err.headers).find(([k]) => k.toLowerCase() === "stream-closed")?.[1]).toBe("true");
      // Closing again is not an error (close without a body is idempotent), and nothing moved.
      await handle.close();
      expect(await readAll(url)).toEqual([{ n: 1 }, { n: 2, last: true }]);
    });
  });
});
