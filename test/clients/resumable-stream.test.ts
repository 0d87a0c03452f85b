/**
 * This package's `resumable-stream` backend (`agent-events/resumable-stream`) as an app gets it:
 * from the `npm pack` tarball of this package (built dist/, `npm run build` first), installed with
 * `resumable-stream` 2.2.13 into a temp dir, used through the library's own API
 * (`createResumableStreamContext` from `resumable-stream/generic`) by two app instances (two
 * processes, test/clients/resumable-stream-app.mjs): on this service's memory store and on the
 * reference server both apps use the one server; on MongoDB each app uses its own instance of this
 * service, both instances on one database (what one instance's app writes, the other's reads):
 * - create on one instance, the browser disconnects half way, resumes on the other instance from
 *   the characters it had: the two parts are the whole stream, once; afterwards the stream is
 *   done (422) on both;
 * - the idempotent API: two instances ask for the same stream at once, one produces, both get it whole;
 * - the key operations' Redis semantics (`incr` atomic across instances, `set` with `EX`, `get`).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTarget, startTwoMongoInstances, targets, uniqueName } from "./targets.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHUNKS = 100;
/** What the app's "model" streams for `id` (its first `n` chunks). */
const full = (id: string, n = CHUNKS): string => Array.from({ length: n }, (_, i) => `data: ${id} chunk ${i}\n\n`).join("");

let appDir: string;
beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/src/adapters/resumable-stream.js"))) throw new Error("dist/ is missing: run `npm run build` first (CI builds before the tests)");
  appDir = mkdtempSync(join(tmpdir(), "rs-app-"));
  const tarball = execFileSync("npm", ["pack", "--silent", "--pack-destination", appDir], { cwd: ROOT, encoding: "utf8" }).trim().split("\n").at(-1)!;
  writeFileSync(join(appDir, "package.json"), JSON.stringify({ name: "rs-app", private: true, type: "module", dependencies: { "agent-events": `file:./${tarball}`, "resumable-stream": "2.2.13" } }));
  execFileSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--omit=dev", "--ignore-scripts"], { cwd: appDir, stdio: "pipe" });
  copyFileSync(join(ROOT, "test/clients/resumable-stream-app.mjs"), join(appDir, "app.mjs"));
}, 180_000);
afterAll(() => {
  if (appDir) rmSync(appDir, { recursive: true, force: true });
});

class AppInstance {
  readonly #child: ChildProcess;
  readonly url: Promise<string>;
  stderr = "";
  constructor(dsUrl: string) {
    this.#child = spawn(process.execPath, [join(appDir, "app.mjs")], { cwd: appDir, env: { PATH: process.env["PATH"] ?? "", DS_URL: dsUrl }, stdio: ["ignore", "pipe", "pipe"] });
    this.#child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.stderr += d));
    this.url = new Promise((resolve, reject) => {
      createInterface({ input: this.#child.stdout! }).once("line", (line) => resolve(`http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`));
      this.#child.once("exit", (code) => reject(new Error(`app exited ${code}: ${this.stderr}`)));
    });
  }
  stop(): void {
    this.#child.kill();
  }
}

/** Reads an SSE response as text; `stopWhen` ends the read early (the browser goes away). */
async function readText(res: Response, stopWhen: (text: string) => boolean = () => false): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (stopWhen(text)) {
      await reader.cancel();
      break;
    }
  }
  return text;
}

const rows = targets.map(({ name }) => ({ name, label: name === "mongo" ? "mongo (two service instances, one database)" : name }));

describe.each(rows)("resumable-stream 2.2.13 on the Durable Streams backend, $label", ({ name }) => {
  /** The service each app instance uses (the same one, except on MongoDB: two instances). */
  let dsUrls: [string, string];
  let stop: () => Promise<void>;
  let a: AppInstance;
  let b: AppInstance;
  let urlA: string;
  let urlB: string;
  beforeAll(async () => {
    if (name === "mongo") ({ urls: dsUrls, stop } = await startTwoMongoInstances());
    else {
      const target = await startTarget(name);
      dsUrls = [target.url, target.url];
      stop = () => target.stop();
    }
    a = new AppInstance(dsUrls[0]);
    b = new AppInstance(dsUrls[1]);
    [urlA, urlB] = await Promise.all([a.url, b.url]);
  });
  afterAll(async () => {
    a?.stop();
    b?.stop();
    await stop?.();
  });

  it("create on one instance, disconnect half way, resume on the other: the whole stream, once; then done", async () => {
    const id = uniqueName("chat");
    const half = full(id, CHUNKS / 2);
    const first = await readText(await fetch(`${urlA}/api/stream/${id}`, { method: "POST" }), (t) => t.length >= half.length);
    expect(first).toBe(half);
    expect(await (await fetch(`${urlB}/api/exists/${id}`)).json()).toBe(true);
    const resumed = await fetch(`${urlB}/api/stream/${id}?resumeAt=${first.length}`);
    expect(resumed.status).toBe(200);
    const rest = readText(resumed);
    await fetch(`${urlA}/release/${id}`, { method: "POST" });
    expect(first + (await rest)).toBe(full(id));
    // Finished: both instances say so (resumable-stream's 422 path) once the producer has marked it
    // done (it does so as it closes the stream, concurrently with the last message).
    let exists: unknown;
    for (let i = 0; i < 300 && exists !== "DONE"; i++) {
      exists = await (await fetch(`${urlA}/api/exists/${id}`)).json();
      if (exists !== "DONE") await new Promise((r) => setTimeout(r, 50));
    }
    for (const url of [urlA, urlB]) {
      const again = await fetch(`${url}/api/stream/${id}`);
      expect([again.status, await again.text()]).toEqual([422, "Stream is already done"]);
      expect(await (await fetch(`${url}/api/exists/${id}`)).json()).toBe("DONE");
    }
    expect((await fetch(`${urlB}/api/stream/${uniqueName("never")}`)).status).toBe(404);
  });

  it("idempotent API: two instances ask for one stream at once; one produces, both get it whole", async () => {
    const id = uniqueName("idem");
    const onA = await fetch(`${urlA}/api/idem/${id}`);
    const textA = readText(onA);
    const onB = await fetch(`${urlB}/api/idem/${id}`);
    expect([onA.status, onB.status]).toEqual([200, 200]);
    const textB = readText(onB);
    // Only the producing instance's gate matters; release both (the other never made a stream).
    await Promise.all([fetch(`${urlA}/release/${id}`, { method: "POST" }), fetch(`${urlB}/release/${id}`, { method: "POST" })]);
    expect(await textA).toBe(full(id));
    expect(await textB).toBe(full(id));
  });

  it("key operations keep Redis semantics: incr atomic across instances, set with EX, get", async () => {
    const { createPublisher } = (await import(pathToFileURL(join(appDir, "node_modules/agent-events/dist/src/adapters/resumable-stream.js")).href)) as typeof import("../../src/adapters/resumable-stream.js");
    const one = createPublisher({ url: dsUrls[0], prefix: "kv-test" });
    const two = createPublisher({ url: dsUrls[1], prefix: "kv-test" });
    const key = uniqueName("counter");
    expect(await one.get(key)).toBeNull();
    const values = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? one : two).incr(key)));
    expect(values.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await two.get(key)).toBe("20");
    expect(await one.set(key, "DONE", { EX: 60 })).toBe("OK");
    await expect(two.incr(key)).rejects.toThrow("ERR value is not an integer or out of range");
    expect(await one.get(key)).toBe("DONE");
    const shortLived = uniqueName("short");
    await one.set(shortLived, "1", { EX: 1 });
    expect(await two.get(shortLived)).toBe("1");
    await new Promise((r) => setTimeout(r, 1100));
    expect(await two.get(shortLived)).toBeNull();
    expect(await one.incr(shortLived)).toBe(1);
    // An incr keeps the key's expiry (Redis INCR does not touch the TTL).
    const kept = uniqueName("kept");
    await one.set(kept, "5", { EX: 1 });
    expect(await two.incr(kept)).toBe(6);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await one.get(kept)).toBeNull();
  });
});
