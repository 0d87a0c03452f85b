// The service's subscribers in a process of their own (bench/peers-adapter.mjs, workload D by
// default: BENCH_SUBSCRIBER_PROCESS). The harness runs the publisher and all 100 subscribers in one
// Node process and measures latency there (one clock), so this process only takes the decoding
// off it: it holds the gRPC Subscribe calls (each on its own HTTP/2 connection, compact view),
// decodes the responses, and forwards each event's payload bytes, in order, to the harness process,
// which calls the subscriber's onEvent when they arrive (the hop is part of the measured latency).
//
// stdin: JSON lines {op: "sub", id, url, stream} | {op: "close", id}
// stdout: frames [type u8][id u32][n u32] then n × ([len u32][bytes]) for type 2 (events);
//         type 1 = live (first response), 3 = ended (n = 0), 4 = closed (n = 0).
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { StreamService, StreamKind, EventView } = await import(path.join(ROOT, 'dist/gen/events/v1/events_pb.js'));

const FRAME = { live: 1, events: 2, ended: 3, closed: 4 };

// Frames written in one tick go out in one write.
let pending = [];
let scheduled = false;
function send(buf) {
  pending.push(buf);
  if (scheduled) return;
  scheduled = true;
  setImmediate(() => {
    scheduled = false;
    const out = Buffer.concat(pending);
    pending = [];
    process.stdout.write(out);
  });
}
function frame(type, id, payloads = []) {
  let size = 9;
  for (const p of payloads) size += 4 + p.length;
  const b = Buffer.allocUnsafe(size);
  b.writeUInt8(type, 0);
  b.writeUInt32LE(id, 1);
  b.writeUInt32LE(payloads.length, 5);
  let o = 9;
  for (const p of payloads) {
    b.writeUInt32LE(p.length, o);
    p.copy(b, o + 4);
    o += 4 + p.length;
  }
  send(b);
}

const subs = new Map(); // id -> AbortController

async function subscribe(id, url, stream) {
  const abort = new AbortController();
  subs.set(id, abort);
  const client = createClient(StreamService, createGrpcTransport({ baseUrl: url, acceptCompression: [] }));
  let live = false;
  try {
    for await (const res of client.subscribe({ stream: { kind: StreamKind.TOPIC, key: stream }, view: EventView.COMPACT }, { signal: abort.signal })) {
      if (!live) {
        live = true;
        frame(FRAME.live, id);
      }
      if (res.compactEvents.length === 0) continue;
      // As in the in-process subscriber: data_json is the event's JSON text, or that text quoted
      // when it was published as a string.
      frame(FRAME.events, id, res.compactEvents.map((e) => Buffer.from(e.dataJson.charCodeAt(0) === 34 ? JSON.parse(e.dataJson) : e.dataJson)));
    }
  } catch (err) {
    if (!abort.signal.aborted) process.stderr.write(`subscriber ${id} ended: ${err}\n`);
  }
  subs.delete(id);
  frame(abort.signal.aborted ? FRAME.closed : FRAME.ended, id);
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  const m = JSON.parse(line);
  if (m.op === 'sub') void subscribe(m.id, m.url, m.stream);
  else if (m.op === 'close') {
    const a = subs.get(m.id);
    if (a) a.abort();
    else frame(FRAME.closed, m.id);
  }
}
// stdin closed: the harness process is gone or done.
for (const a of subs.values()) a.abort();
