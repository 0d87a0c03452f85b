import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { pino } from "pino";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { loadConfig } from "../../src/config.js";
import { startApp, type App, type AppOptions } from "../../src/server/app.js";

/** Starts the real service on 127.0.0.1 and a port the OS picks. */
export async function startTestServer(opts: AppOptions & { env?: Record<string, string> } = {}): Promise<App> {
  // Auth off unless a test turns it on: most suites test other things and name their project.
  const cfg = loadConfig({ PORT: "0", HOST: "127.0.0.1", AUTH: "off", ...opts.env });
  return startApp(cfg, { logger: pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" }), ...opts });
}

export type Protocol = "grpc" | "connect" | "grpc-web";

export function transport(app: App, protocol: Protocol): Transport {
  switch (protocol) {
    case "grpc":
      return createGrpcTransport({ baseUrl: app.url });
    case "connect":
      return createConnectTransport({ baseUrl: app.url, httpVersion: "1.1", useBinaryFormat: true });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl: app.url, httpVersion: "1.1" });
  }
}

export function client<S extends DescService>(service: S, app: App, protocol: Protocol): Client<S> {
  return createClient(service, transport(app, protocol));
}

export async function postJson(app: App, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(app.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

export async function getJson(app: App, path: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(app.url + path, { headers });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** A server-sent events reader over fetch, as a browser or curl would use the stream. */
export class SseReader {
  readonly messages: EventSourceMessage[] = [];
  readonly comments: string[] = [];
  status = 0;
  headers: Headers | undefined;
  /** True once the server ended the stream (rather than this reader closing it). */
  endedByServer = false;
  readonly #abort = new AbortController();
  #waiters: (() => void)[] = [];
  #done: Promise<void>;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.#done = this.#run(url, headers);
  }

  async #run(url: string, headers: Record<string, string>): Promise<void> {
    const parser = createParser({
      onEvent: (m) => {
        this.messages.push(m);
        this.#wake();
      },
      onComment: (c) => {
        this.comments.push(c);
        this.#wake();
      },
    });
    try {
      const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: this.#abort.signal });
      this.status = res.status;
      this.headers = res.headers;
      this.#wake();
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
      this.endedByServer = !this.#abort.signal.aborted;
    } catch (err) {
      if (!this.#abort.signal.aborted) throw err;
    } finally {
      this.#wake();
    }
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    w.forEach((f) => f());
  }

  /** Waits until `pred` holds (checked on every message), or fails after timeoutMs. */
  async until(pred: (r: SseReader) => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`SSE condition not met in ${timeoutMs} ms; got ${this.messages.length} messages`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#done.catch(() => {});
  }

  /** Resolves when the stream is over (ended by the server, or failed). */
  finished(): Promise<void> {
    return this.#done;
  }
}
