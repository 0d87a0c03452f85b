/**
 * A stand-in for an application's own backend (a Next.js route handler, a TanStack Start server
 * function): a plain node:http server that hands each request to a fetch-style handler
 * (`(Request) => Promise<Response>`), the shape the AI transports' server helpers produce.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface AppServer {
  url: string;
  close(): Promise<void>;
}

export async function serveFetch(handler: (req: Request) => Promise<Response>): Promise<AppServer> {
  const server = http.createServer((req, res) => {
    // The browser going away cancels the handler's work (a read proxy's upstream request), as a
    // fetch-style framework does through Request.signal.
    const gone = new AbortController();
    res.once("close", () => gone.abort());
    void (async () => {
      try {
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const body = chunks.length ? Buffer.concat(chunks) : undefined;
        const request = new Request(`http://${req.headers.host}${req.url}`, {
          method: req.method,
          headers: Object.entries(req.headers).flatMap(([k, v]) => (v === undefined ? [] : (Array.isArray(v) ? v : [v]).map((x) => [k, x] as [string, string]))),
          body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
          signal: gone.signal,
        });
        const response = await handler(request);
        res.writeHead(response.status, Object.fromEntries(response.headers));
        if (response.body) for await (const c of response.body as unknown as AsyncIterable<Uint8Array>) res.write(c);
        res.end();
      } catch (err) {
        // A body that fails half way (its upstream was cut) is passed on as a cut, not an end.
        if (res.headersSent) res.destroy();
        else res.writeHead(500, { "content-type": "text/plain" }).end(String(err));
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A gate a generator waits at: `wait()` blocks until `open()`. */
export class Gate {
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));
  reached = false;
  wait(): Promise<void> {
    this.reached = true;
    return this.#opened;
  }
  open(): void {
    this.#open();
  }
}
