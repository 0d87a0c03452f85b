/**
 * `@durable-streams/tanstack-ai-transport` 0.0.9 in its recommended chat-session flow (its README),
 * on this service (both stores) and the reference server: the app's POST route answers with
 * `toDurableChatSessionResponse` (the user's message echoed, then the model's chunks), its GET
 * route proxies reads to the durable stream, the page loader materializes the chat with
 * `materializeSnapshotFromDurableStream`, and the browser follows with `durableStreamConnection`
 * from the loader's offset.
 * - resume mid-answer: a page goes away while the model is half way through; the reloaded page's
 *   snapshot plus its live subscription from the snapshot's offset give the whole answer, once;
 * - server-side snapshot after the answer: the complete conversation, every token.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durableStreamConnection, materializeSnapshotFromDurableStream, toDurableChatSessionResponse, type TanStackChunk } from "@durable-streams/tanstack-ai-transport";
import { startTarget, targets, uniqueName, until, type ClientTarget } from "./targets.js";
import { Gate, serveFetch, type AppServer } from "./app-server.js";

const TOKENS = 2000;
const tokens = Array.from({ length: TOKENS }, (_, i) => `w${i}${i % 13 === 12 ? "\n" : " "}`);
const FULL_TEXT = tokens.join("");

/** The chunks TanStack AI's chat emits for one streamed answer, pausing at `gate` half way. */
async function* modelAnswer(messageId: string, gate: Gate | undefined): AsyncGenerator<TanStackChunk> {
  const base = { model: "mock", timestamp: Date.now() };
  yield { type: "RUN_STARTED", runId: messageId, ...base };
  yield { type: "TEXT_MESSAGE_START", messageId, role: "assistant", ...base };
  for (let i = 0; i < TOKENS; i++) {
    if (gate && i === TOKENS / 2) await gate.wait();
    yield { type: "TEXT_MESSAGE_CONTENT", messageId, delta: tokens[i], ...base };
  }
  yield { type: "TEXT_MESSAGE_END", messageId, ...base };
  yield { type: "RUN_FINISHED", runId: messageId, finishReason: "stop", ...base };
}

const textOf = (m: { parts?: { type?: string; content?: string }[] } | undefined): string => (m?.parts ?? []).filter((p) => p.type === "text").map((p) => p.content ?? "").join("");

/** Follows a connection (as the page's useChat does) until the run finishes or the page goes away. */
function follow(conn: ReturnType<typeof durableStreamConnection>, signal: AbortSignal): { chunks: TanStackChunk[]; done: Promise<void> } {
  const chunks: TanStackChunk[] = [];
  const done = (async () => {
    for await (const c of conn.subscribe(signal)) {
      chunks.push(c);
      if (c.type === "RUN_FINISHED") return;
    }
  })().catch((e: unknown) => {
    if (!signal.aborted) throw e;
  });
  return { chunks, done };
}

const deltas = (chunks: TanStackChunk[]): string =>
  chunks
    .filter((c) => c.type === "TEXT_MESSAGE_CONTENT" && c.messageId?.startsWith("answer-"))
    .map((c) => c.delta as string)
    .join("");

describe.each(targets)("@durable-streams/tanstack-ai-transport on $name", ({ name }) => {
  let target: ClientTarget;
  let app: AppServer;
  const gates = new Map<string, Gate>();
  const writes: Promise<unknown>[] = [];
  const streamUrl = (chatId: string): string => `${target.url}/v1/stream/tanstack-${chatId}`;

  beforeAll(async () => {
    target = await startTarget(name);
    app = await serveFetch(async (req) => {
      const url = new URL(req.url);
      const id = url.searchParams.get("id") ?? "";
      if (req.method === "POST" && url.pathname === "/api/chat") {
        const { messages } = (await req.json()) as { messages: { id: string; role: string; parts: { type: string; content: string }[] }[] };
        return toDurableChatSessionResponse({
          stream: { writeUrl: streamUrl(id) },
          newMessages: [messages.at(-1)!],
          responseStream: modelAnswer(`answer-${id}`, gates.get(id)),
          waitUntil: (p) => writes.push(p),
        });
      }
      if (req.method === "GET" && url.pathname === "/api/chat-stream") {
        // The read proxy: forwards the protocol's query parameters, returns the upstream answer.
        const upstream = new URL(streamUrl(id));
        for (const [k, v] of url.searchParams) if (k !== "id") upstream.searchParams.set(k, v);
        const res = await fetch(upstream, { headers: { accept: req.headers.get("accept") ?? "*/*" }, signal: req.signal });
        const headers = new Headers(res.headers);
        headers.delete("content-encoding");
        headers.delete("content-length");
        return new Response(res.body, { status: res.status, headers });
      }
      return new Response("not found", { status: 404 });
    });
  });
  afterAll(async () => {
    for (const gate of gates.values()) gate.open();
    await Promise.allSettled(writes);
    await app?.close();
    await target?.stop();
  });

  const connect = (id: string, initialOffset?: string) =>
    durableStreamConnection({ sendUrl: `${app.url}/api/chat?id=${id}`, readUrl: `${app.url}/api/chat-stream?id=${id}`, initialOffset });
  const userMessage = { id: "u1", role: "user", parts: [{ type: "text", content: "Write two thousand words." }] };

  it("resume mid-answer: the reloaded page's snapshot and live tail give the whole answer, once", async () => {
    const id = uniqueName("resume");
    const gate = new Gate();
    gates.set(id, gate);
    const firstPage = new AbortController();
    const first = connect(id);
    await first.send([userMessage]);
    const seen = follow(first, firstPage.signal);
    await until(() => gate.reached && seen.chunks.length > 0, () => `${seen.chunks.length} chunks`);
    firstPage.abort();
    await seen.done;
    // The reloaded page's loader materializes what is there and where it ends...
    const snap = await materializeSnapshotFromDurableStream({ readUrl: streamUrl(id) });
    expect(snap.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(textOf(snap.messages[0])).toBe("Write two thousand words.");
    const partial = textOf(snap.messages[1]);
    expect(partial.length).toBeGreaterThan(0);
    expect(FULL_TEXT.startsWith(partial)).toBe(true);
    // ...and the page follows live from there while the model finishes.
    const page = new AbortController();
    const live = follow(connect(id, snap.offset), page.signal);
    gate.open();
    await live.done;
    page.abort();
    expect(partial + deltas(live.chunks)).toBe(FULL_TEXT);
  });

  it("server-side snapshot after the answer: the whole conversation, every token", async () => {
    const id = uniqueName("snapshot");
    const before = writes.length;
    await connect(id).send([userMessage]);
    await Promise.all(writes.slice(before));
    const snap = await materializeSnapshotFromDurableStream({ readUrl: streamUrl(id) });
    expect(snap.messages.map((m) => [m.id, m.role])).toEqual([
      ["u1", "user"],
      [`answer-${id}`, "assistant"],
    ]);
    expect(textOf(snap.messages[1])).toBe(FULL_TEXT);
    // Nothing after the snapshot's offset: it is the tail.
    const after = await materializeSnapshotFromDurableStream({ readUrl: streamUrl(id), offset: snap.offset });
    expect(after.messages).toEqual([]);
  });
});
