/**
 * `@durable-streams/y-durable-streams` 0.2.7 (with yjs 13.6.33, y-protocols 1.0.7): its Yjs server
 * (`YjsServer`, the package's own, in front of the Durable Streams server as its docs deploy it)
 * and its provider, on this service (both stores) and the reference server:
 * - two editors converge, and each sees the other's presence (awareness);
 * - compaction (a low threshold) snapshots the document; edits continue after it; a late joiner
 *   loads the snapshot and the updates after it, and has the whole document.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as Y from "yjs";
import { Awareness } from "y-protocols/awareness";
import { YjsProvider } from "@durable-streams/y-durable-streams";
import { YjsServer } from "@durable-streams/y-durable-streams/server";
import { startTarget, targets, uniqueName, until, type ClientTarget } from "./targets.js";

interface Editor {
  doc: Y.Doc;
  text: Y.Text;
  awareness: Awareness;
  provider: YjsProvider;
}

describe.each(targets)("@durable-streams/y-durable-streams on $name", ({ name }) => {
  let target: ClientTarget;
  let yjs: YjsServer;
  let baseUrl: string;
  const editors: Editor[] = [];
  beforeAll(async () => {
    target = await startTarget(name);
    yjs = new YjsServer({ port: 0, host: "127.0.0.1", dsServerUrl: target.url, compactionThreshold: 2048 });
    baseUrl = `${await yjs.start()}/v1/yjs/test`;
  });
  afterAll(async () => {
    for (const e of editors) e.provider.destroy();
    await yjs?.stop();
    await target?.stop();
  });

  const open = async (docId: string, user: string): Promise<Editor> => {
    const doc = new Y.Doc();
    const awareness = new Awareness(doc);
    awareness.setLocalStateField("user", { name: user });
    const provider = new YjsProvider({ doc, baseUrl, docId, awareness });
    const editor = { doc, text: doc.getText("body"), awareness, provider };
    editors.push(editor);
    await until(() => provider.synced, () => `${user} not synced`);
    return editor;
  };
  const names = (e: Editor): string[] =>
    [...e.awareness.getStates().values()]
      .map((s) => (s["user"] as { name?: string } | undefined)?.name ?? "")
      .filter(Boolean)
      .sort();
  /** Types `lines` into `e`, one edit (one update) per line, at the end. */
  const type = (e: Editor, prefix: string, lines: number): void => {
    for (let i = 0; i < lines; i++) e.text.insert(e.text.length, `${prefix} line ${i} ${"x".repeat(20)}\n`);
  };

  it("two editors converge and see each other's presence", async () => {
    const docId = uniqueName("doc");
    const ada = await open(docId, "ada");
    const bob = await open(docId, "bob");
    // Each moves its cursor once both are connected (presence is sent on change, and every 15 s).
    ada.awareness.setLocalStateField("cursor", { index: 0 });
    bob.awareness.setLocalStateField("cursor", { index: 0 });
    type(ada, "ada", 20);
    type(bob, "bob", 20);
    await until(() => ada.text.length > 0 && ada.text.toString() === bob.text.toString() && ada.text.toString().split("\n").length === 41, () => `${ada.text.length} vs ${bob.text.length}`);
    for (const who of ["ada", "bob"]) for (let i = 0; i < 20; i++) expect(ada.text.toString()).toContain(`${who} line ${i} `);
    await until(() => names(ada).join() === "ada,bob" && names(bob).join() === "ada,bob", () => `${names(ada)} / ${names(bob)}`);
  });

  it("a late joiner after compaction loads the whole document", async () => {
    const docId = uniqueName("compacted");
    const ada = await open(docId, "ada");
    const bob = await open(docId, "bob");
    // Enough edits to pass the compaction threshold (2 KiB of updates) several times over.
    type(ada, "before", 120);
    await until(() => bob.text.toString() === ada.text.toString(), () => `${bob.text.length} of ${ada.text.length}`);
    // The server has compacted: the snapshot-discovery redirect names a snapshot.
    let location = "";
    for (let i = 0; i < 300 && !location.includes("_snapshot"); i++) {
      location = (await fetch(`${baseUrl}/docs/${docId}?offset=snapshot`, { redirect: "manual" })).headers.get("location") ?? "";
      if (!location.includes("_snapshot")) await new Promise((r) => setTimeout(r, 100));
    }
    expect(location).toContain("_snapshot");
    // Edits after the snapshot, from both editors.
    type(ada, "after-ada", 10);
    type(bob, "after-bob", 10);
    await until(() => ada.text.toString() === bob.text.toString() && ada.text.toString().split("\n").length === 141, () => `${ada.text.length} vs ${bob.text.length}`);
    const late = await open(docId, "cy");
    // Synced means loaded; allow live catch-up a little time, then compare the whole text.
    await until(() => late.text.toString() === ada.text.toString(), () => "", 10_000).catch(() => undefined);
    expect(late.text.toString()).toBe(ada.text.toString());
    expect(late.text.toString().split("\n").length).toBe(141);
  });
});
