/**
 * `@durable-streams/state` 0.3.1's StreamDB (`@durable-streams/state/db`, on its peer
 * `@tanstack/db` 0.15.2) as an app uses it, on this service (both stores) and the reference server:
 * - catch-up only (`live: false`): `preload()` finishes with every row of a 1,500-row stream;
 * - live: a second writer's inserts, updates and deletes reach the collections;
 * - optimistic actions: the row shows at once, the action completes when its txid comes back
 *   through the stream, and another tab's StreamDB sees it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStateSchema } from "@durable-streams/state";
import { createStreamDB } from "@durable-streams/state/db";
import { DurableStream } from "@durable-streams/client";
import { startTarget, targets, uniqueName, until, type ClientTarget } from "./targets.js";

interface User {
  id: string;
  name: string;
  n: number;
}

/** A Standard Schema validator written out (what zod or valibot would provide). */
const userSchema = {
  "~standard": {
    version: 1 as const,
    vendor: "test",
    validate: (value: unknown) => {
      const v = value as Partial<User> | null;
      return v && typeof v.id === "string" && typeof v.name === "string" && typeof v.n === "number" ? { value: v as User } : { issues: [{ message: "not a user" }] };
    },
  },
};
const schema = createStateSchema({ users: { schema: userSchema, type: "user", primaryKey: "id" } });

const ROWS = 1500;
/** A row's own fields (TanStack DB adds virtual ones such as $synced). */
const row = (u: User | undefined): User | undefined => u && { id: u.id, name: u.name, n: u.n };

describe.each(targets)("@durable-streams/state StreamDB on $name", ({ name }) => {
  let target: ClientTarget;
  beforeAll(async () => {
    target = await startTarget(name);
  });
  afterAll(async () => {
    await target?.stop();
  });
  const newStream = async (prefix: string): Promise<{ url: string; handle: DurableStream }> => {
    const url = `${target.url}/v1/stream/${uniqueName(prefix)}`;
    return { url, handle: await DurableStream.create({ url, contentType: "application/json" }) };
  };
  /** Writes events in POSTs of 500 (a JSON array is flattened one level: 500 messages each). */
  const write = async (url: string, events: unknown[]): Promise<void> => {
    for (let i = 0; i < events.length; i += 500) {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events.slice(i, i + 500)) });
      expect(res.ok).toBe(true);
    }
  };

  it(`catch-up only (live: false): preload() finishes with all ${ROWS} rows`, async () => {
    const { url } = await newStream("state-catchup");
    await write(
      url,
      Array.from({ length: ROWS }, (_, i) => schema.users.insert({ value: { id: `u${i}`, name: `user ${i}`, n: i } })),
    );
    const db = createStreamDB({ streamOptions: { url, contentType: "application/json" }, state: schema, live: false });
    try {
      await db.preload();
      expect(db.collections.users.size).toBe(ROWS);
      expect(row(db.collections.users.get("u0"))).toEqual({ id: "u0", name: "user 0", n: 0 });
      expect(row(db.collections.users.get(`u${ROWS - 1}`))).toEqual({ id: `u${ROWS - 1}`, name: `user ${ROWS - 1}`, n: ROWS - 1 });
    } finally {
      db.close();
    }
  });

  it("live: another writer's inserts, updates and deletes reach the collections", async () => {
    const { url } = await newStream("state-live");
    await write(url, [schema.users.insert({ value: { id: "a", name: "Ada", n: 1 } })]);
    const db = createStreamDB({ streamOptions: { url, contentType: "application/json" }, state: schema });
    try {
      await db.preload();
      expect(row(db.collections.users.get("a"))).toEqual({ id: "a", name: "Ada", n: 1 });
      await write(url, [
        schema.users.insert({ value: { id: "b", name: "Bob", n: 2 } }),
        schema.users.update({ value: { id: "a", name: "Ada L.", n: 3 } }),
        schema.users.insert({ value: { id: "c", name: "Cy", n: 4 } }),
        schema.users.delete({ key: "b" }),
      ]);
      await until(() => db.collections.users.size === 2 && db.collections.users.get("a")?.name === "Ada L.", () => JSON.stringify(db.collections.users.toArray));
      expect(db.collections.users.toArray.map(row).sort((x, y) => x!.id.localeCompare(y!.id))).toEqual([
        { id: "a", name: "Ada L.", n: 3 },
        { id: "c", name: "Cy", n: 4 },
      ]);
    } finally {
      db.close();
    }
  });

  it("optimistic actions: visible at once, confirmed through the stream, seen by another tab", async () => {
    const { url } = await newStream("state-actions");
    const db = createStreamDB({
      streamOptions: { url, contentType: "application/json" },
      state: schema,
      actions: ({ db, stream }) => ({
        addUser: {
          onMutate: (user: User) => {
            db.collections.users.insert(user);
          },
          mutationFn: async (user: User) => {
            const txid = crypto.randomUUID();
            await stream.append(JSON.stringify(schema.users.insert({ value: user, headers: { txid } })));
            await db.utils.awaitTxId(txid, 20_000);
          },
        },
      }),
    });
    const otherTab = createStreamDB({ streamOptions: { url, contentType: "application/json" }, state: schema });
    try {
      await Promise.all([db.preload(), otherTab.preload()]);
      const tx = db.actions.addUser({ id: "opt", name: "Optimistic", n: 7 });
      // Optimistic: in the collection before the server has it.
      expect(row(db.collections.users.get("opt"))).toEqual({ id: "opt", name: "Optimistic", n: 7 });
      await tx.isPersisted.promise;
      expect(tx.state).toBe("completed");
      expect(row(db.collections.users.get("opt"))).toEqual({ id: "opt", name: "Optimistic", n: 7 });
      await until(() => otherTab.collections.users.has("opt"));
      expect(row(otherTab.collections.users.get("opt"))).toEqual({ id: "opt", name: "Optimistic", n: 7 });
    } finally {
      db.close();
      otherTab.close();
    }
  });
});
