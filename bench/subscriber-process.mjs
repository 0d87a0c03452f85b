// The service's subscribers in a process of their own (bench/peers-adapter.mjs, workload D by
// default: BENCH_SUBSCRIBER_PROCESS). The harness runs the publisher and all 100 subscribers in one
// Node process and measures latency there (one clock), so this process only takes the decoding
// off it: it holds the gRPC Subscribe calls (each on its own HTTP/2 connection, compact view),
// decodes the responses, and forwards each event's payload bytes, in order, to the harness process,
// which calls the subscriber's onEvent when they arrive (the hop is part of the measured latency).
//
// How it reads (BENCH_SUBSCRIBER_CLIENT): `wire` (default) is the lean client a consumer of 100
// streams would write: node:http2, the gRPC framing read here, and protobuf-es's wire-level
// BinaryReader taking only each CompactEvent's data_json bytes (no message objects, no UTF-8
// decoding; the server's encoding is the same either way). `connect` uses connect-es's client and
// decodes whole SubscribeResponse messages: on the 2-vCPU box that process saturated a core at
// D's 100,000 deliveries/s, and its queue, not the server, set D's latency.
//
// stdin: JSON lines {op: "sub", id, url, stream} | {op: "close", id}
// stdout: frames [type u8][id u32][n u32] then n × ([len u32][bytes]) for type 2 (events);
//         type 1 = live (first response), 3 = ended (n = 0), 4 = closed (n = 0).
import http2 from 'node:http2';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { encodeEnvelope } from '@connectrpc/connect/protocol';
import { create, toBinary } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { StreamService, StreamKind, EventView, SubscribeRequestSchema } = await import(path.join(ROOT, 'dist/gen/events/v1/events_pb.js'));
const CLIENT = process.env.BENCH_SUBSCRIBER_CLIENT ?? 'wire';

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

/** As in the in-process subscriber: data_json is the event's JSON text, or that text quoted when it was published as a string. */
function payload(dataJson) {
  return dataJson.charCodeAt(0) === 34 ? JSON.parse(dataJson) : dataJson;
}

function subscribe(id, url, stream) {
  return CLIENT === 'connect' ? subscribeConnect(id, url, stream) : subscribeWire(id, url, stream);
}

/** SubscribeResponse (field 2: repeated CompactEvent) → each CompactEvent's data_json (field 4) bytes, as views of `msg`. */
function dataJsonOf(msg) {
  const out = [];
  const r = new BinaryReader(msg);
  while (r.pos < r.len) {
    const [field, wt] = r.tag();
    if (field !== 2 || wt !== WireType.LengthDelimited) {
      r.skip(wt, field);
      continue;
    }
    const ev = new BinaryReader(r.bytes());
    let data;
    while (ev.pos < ev.len) {
      const [f, w] = ev.tag();
      if (f === 4 && w === WireType.LengthDelimited) data = ev.bytes();
      else ev.skip(w, f);
    }
    if (data === undefined || data.length === 0) throw new Error('a CompactEvent without data_json');
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.length);
    out.push(bytes[0] === 34 ? Buffer.from(payload(bytes.toString('utf8'))) : bytes);
  }
  return out;
}

async function subscribeWire(id, url, stream) {
  const abort = new AbortController();
  subs.set(id, abort);
  const request = toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { stream: { kind: StreamKind.TOPIC, key: stream }, view: EventView.COMPACT }));
  const session = http2.connect(url);
  session.on('error', () => {});
  let live = false;
  try {
    await new Promise((resolve, reject) => {
      const call = session.request({ ':method': 'POST', ':path': '/events.v1.StreamService/Subscribe', 'content-type': 'application/grpc+proto', te: 'trailers' });
      abort.signal.addEventListener('abort', () => call.close(http2.constants.NGHTTP2_CANCEL), { once: true });
      let status;
      let message = '';
      const take = (h) => {
        if (h['grpc-status'] !== undefined) {
          status = String(h['grpc-status']);
          message = decodeURIComponent(String(h['grpc-message'] ?? ''));
        }
      };
      call.on('response', take);
      call.on('trailers', take);
      // gRPC length-prefixed messages: [flags u8][length u32 BE][message], across chunks.
      let buf = Buffer.alloc(0);
      call.on('data', (chunk) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        let at = 0;
        const events = [];
        while (buf.length - at >= 5) {
          const len = buf.readUInt32BE(at + 1);
          if (buf.length - at - 5 < len) break;
          if (buf[at] !== 0) return call.destroy(new Error('a compressed or flagged gRPC message (compression is not offered)'));
          if (!live) {
            live = true;
            frame(FRAME.live, id);
          }
          for (const p of dataJsonOf(buf.subarray(at + 5, at + 5 + len))) events.push(p);
          at += 5 + len;
        }
        buf = at === buf.length ? Buffer.alloc(0) : buf.subarray(at);
        if (events.length > 0) frame(FRAME.events, id, events);
      });
      call.on('error', reject);
      call.on('close', () => (status === undefined || status === '0' || abort.signal.aborted ? resolve() : reject(new Error(`grpc-status ${status}: ${message}`))));
      call.end(encodeEnvelope(0, request));
    });
  } catch (err) {
    if (!abort.signal.aborted) process.stderr.write(`subscriber ${id} ended: ${err}\n`);
  } finally {
    session.close();
  }
  subs.delete(id);
  frame(abort.signal.aborted ? FRAME.closed : FRAME.ended, id);
}

async function subscribeConnect(id, url, stream) {
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
      frame(FRAME.events, id, res.compactEvents.map((e) => Buffer.from(payload(e.dataJson))));
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
