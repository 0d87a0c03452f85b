// An app instance as a Next.js app using `resumable-stream` would have it, with this service in
// place of Redis: copied into a temp dir where `agent-events` is installed from its `npm pack`
// tarball, and started by test/clients/resumable-stream.test.ts (two of them: two instances).
// DS_URL: the service; prints {"port"} once listening. Routes, as in resumable-stream's README:
//   POST /api/stream/:id            createNewResumableStream (the generation starts here)
//   GET  /api/stream/:id?resumeAt=N resumeExistingStream (404: no such stream, 422: already done)
//   GET  /api/idem/:id?resumeAt=N   resumableStream (creates or resumes)
//   POST /release/:id               lets this instance's generation :id finish (it waits half way)
import http from "node:http";
import { createResumableStreamContext } from "resumable-stream/generic";
import { createDurableStreamsBackend } from "agent-events/resumable-stream";

const CHUNKS = 100;
const gates = new Map();
const gate = (id) => {
  if (!gates.has(id)) {
    let open;
    const opened = new Promise((r) => (open = r));
    gates.set(id, { opened, open });
  }
  return gates.get(id);
};

/** The "model": CHUNKS SSE events, waiting for /release half way. */
function makeStream(id) {
  let i = 0;
  return new ReadableStream({
    async pull(controller) {
      if (i === CHUNKS / 2) await gate(id).opened;
      if (i === CHUNKS) return controller.close();
      controller.enqueue(`data: ${id} chunk ${i++}\n\n`);
    },
  });
}

const ctx = createResumableStreamContext({ waitUntil: null, keyPrefix: "rs-test", ...createDurableStreamsBackend({ url: process.env.DS_URL }) });

async function send(res, stream) {
  if (stream === undefined) return res.writeHead(404).end("no such stream");
  if (stream === null) return res.writeHead(422).end("Stream is already done");
  res.writeHead(200, { "content-type": "text/event-stream" });
  res.flushHeaders();
  const reader = stream.getReader();
  res.on("close", () => reader.cancel().catch(() => {}));
  for (;;) {
    const { done, value } = await reader.read().catch(() => ({ done: true }));
    if (done || res.destroyed) break;
    res.write(value);
  }
  res.end();
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://app");
  const [, area, what, id] = url.pathname.split("/");
  const resumeAt = url.searchParams.has("resumeAt") ? Number(url.searchParams.get("resumeAt")) : undefined;
  (async () => {
    if (req.method === "POST" && area === "release") {
      gate(what).open();
      return res.writeHead(204).end();
    }
    if (area === "api" && what === "stream" && req.method === "POST") return send(res, await ctx.createNewResumableStream(id, () => makeStream(id)));
    if (area === "api" && what === "stream" && req.method === "GET") return send(res, await ctx.resumeExistingStream(id, resumeAt));
    if (area === "api" && what === "idem" && req.method === "GET") return send(res, await ctx.resumableStream(id, () => makeStream(id), resumeAt));
    if (area === "api" && what === "exists") return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(await ctx.hasExistingStream(id)));
    res.writeHead(404).end();
  })().catch((err) => {
    console.error(err);
    if (!res.headersSent) res.writeHead(500).end(String(err));
    else res.destroy();
  });
});
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: server.address().port })));
