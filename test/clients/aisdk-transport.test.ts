/**
 * `@durable-streams/aisdk-transport` 0.0.7 with the Vercel AI SDK (`ai` 6.0.x, the transport's
 * peer range) as an application wires it, on this service (both stores) and the reference server:
 * the app's route runs `streamText` on the SDK's mock model (`ai/test`) streaming a 2,000-token
 * answer and hands `result.toUIMessageStream()` to `toDurableStreamResponse`; the browser side is
 * the SDK's own chat (`AbstractChat`, what `useChat` wraps) with `createDurableChatTransport`.
 * - a streamed answer: the chat ends with the full text, and reading the durable stream back
 *   (another device, after the fact) rebuilds the same message;
 * - a page reload mid-answer: the first chat goes away while the model is half way through; a new
 *   chat with the same id resumes (`resumeStream`, as `useChat({ resume: true })` does on mount)
 *   and ends with the full text.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AbstractChat, convertToModelMessages, readUIMessageStream, streamText, type ChatState, type ChatStatus, type UIMessage, type UIMessageChunk } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { createDurableChatTransport, toDurableStreamResponse } from "@durable-streams/aisdk-transport";
import { stream } from "@durable-streams/client";
import { startTarget, targets, uniqueName, until, type ClientTarget } from "./targets.js";
import { Gate, serveFetch, type AppServer } from "./app-server.js";

const TOKENS = 2000;
const tokens = Array.from({ length: TOKENS }, (_, i) => `tok${i}${i % 17 === 16 ? "\n" : " "}`);
const FULL_TEXT = tokens.join("");

/** The SDK's mock model streaming `tokens`, pausing at `gate` (if any) after `pauseAt` tokens. */
function mockModel(gate?: Gate, pauseAt = TOKENS / 2): MockLanguageModelV3 {
  return new MockLanguageModelV3({
    doStream: async () => {
      let i = 0;
      return {
        stream: new ReadableStream({
          start(c) {
            c.enqueue({ type: "stream-start", warnings: [] });
            c.enqueue({ type: "text-start", id: "t1" });
          },
          async pull(c) {
            if (gate && i === pauseAt) await gate.wait();
            if (i < TOKENS) {
              c.enqueue({ type: "text-delta", id: "t1", delta: tokens[i++]! });
              return;
            }
            c.enqueue({ type: "text-end", id: "t1" });
            c.enqueue({
              type: "finish",
              finishReason: { unified: "stop", raw: "stop" },
              usage: { inputTokens: { total: 3, noCache: 3, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: TOKENS, text: TOKENS, reasoning: 0 } },
            });
            c.close();
          },
        }),
      };
    },
  });
}

/** The chat state a UI framework keeps (what @ai-sdk/react's Chat keeps in React state). */
class ArrayChatState implements ChatState<UIMessage> {
  status: ChatStatus = "ready";
  error: Error | undefined = undefined;
  constructor(public messages: UIMessage[] = []) {}
  pushMessage = (m: UIMessage): void => {
    this.messages = [...this.messages, m];
  };
  popMessage = (): void => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (i: number, m: UIMessage): void => {
    this.messages = this.messages.map((x, k) => (k === i ? m : x));
  };
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

class Chat extends AbstractChat<UIMessage> {
  constructor(init: { id: string; api: string; messages?: UIMessage[] }) {
    super({ id: init.id, transport: createDurableChatTransport({ api: init.api }), state: new ArrayChatState(init.messages) });
  }
}

const textOf = (m: UIMessage | undefined): string => (m?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");

describe.each(targets)("@durable-streams/aisdk-transport + ai 6 on $name", ({ name }) => {
  let target: ClientTarget;
  let app: AppServer;
  /** The app's record of each chat: its messages and its generation's stream (what a real app keeps in its database). */
  const chats = new Map<string, { messages: UIMessage[]; streamUrl: string }>();
  const gates = new Map<string, Gate>();
  const writes: Promise<unknown>[] = [];

  beforeAll(async () => {
    target = await startTarget(name);
    app = await serveFetch(async (req) => {
      const url = new URL(req.url);
      const resume = /^\/api\/chat\/([^/]+)\/stream$/.exec(url.pathname);
      if (req.method === "GET" && resume) {
        const chat = chats.get(resume[1]!);
        return chat ? new Response(null, { status: 200, headers: { Location: chat.streamUrl } }) : new Response(null, { status: 204 });
      }
      if (req.method === "POST" && url.pathname === "/api/chat") {
        const body = (await req.json()) as { id: string; messages: UIMessage[] };
        const streamUrl = `${target.url}/v1/stream/${uniqueName(`chat-${body.id}`)}`;
        chats.set(body.id, { messages: body.messages, streamUrl });
        const result = streamText({ model: mockModel(gates.get(body.id)), messages: await convertToModelMessages(body.messages) });
        return toDurableStreamResponse({ source: result.toUIMessageStream(), stream: { writeUrl: streamUrl }, waitUntil: (p) => writes.push(p) });
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

  it(`a streamed ${TOKENS}-token answer arrives whole, and reads back whole from the durable stream`, async () => {
    const id = uniqueName("answer");
    const chat = new Chat({ id, api: `${app.url}/api/chat` });
    await chat.sendMessage({ text: "Count to two thousand." });
    expect(chat.error).toBeUndefined();
    expect(chat.status).toBe("ready");
    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(textOf(chat.messages[1])).toBe(FULL_TEXT);
    // Another device, after the fact: the stored chunks rebuild the same message.
    await Promise.all(writes);
    const chunks = (await stream<UIMessageChunk>({ url: chats.get(id)!.streamUrl, offset: "-1", live: false, json: true })).jsonStream();
    let last: UIMessage | undefined;
    for await (const m of readUIMessageStream({ stream: chunks })) last = m;
    expect(textOf(last)).toBe(FULL_TEXT);
  });

  it("a page reload mid-answer resumes the generation and ends with the full text", async () => {
    const id = uniqueName("reload");
    const gate = new Gate();
    gates.set(id, gate);
    const api = `${app.url}/api/chat`;
    const first = new Chat({ id, api });
    const sent = first.sendMessage({ text: "Count to two thousand, slowly." });
    // Half way through (the model waits at the gate), the page goes away.
    await until(() => gate.reached && textOf(first.messages[1]).length > 0, () => `status ${first.status}, ${textOf(first.messages[1]).length} chars`);
    await first.stop();
    await sent;
    const partial = textOf(first.messages[1]);
    expect(FULL_TEXT.startsWith(partial) && partial.length < FULL_TEXT.length).toBe(true);
    // The reloaded page: the user's message comes from the app's store, the answer from the stream.
    const reloaded = new Chat({ id, api, messages: chats.get(id)!.messages });
    const resumed = reloaded.resumeStream();
    await until(() => textOf(reloaded.messages.at(-1)).length >= partial.length, () => `${textOf(reloaded.messages.at(-1)).length} chars after reload`);
    gate.open();
    await resumed;
    expect(reloaded.error).toBeUndefined();
    expect(reloaded.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(textOf(reloaded.messages[1])).toBe(FULL_TEXT);
  });
});
