// This service as a system of the peer benchmark in ../shared/bench/peers (contract: its README,
// "Adding a system"). It starts the built service (`npm run build` first) on a free loopback port
// with the in-memory store (or MONGODB_URI when set). The default export talks to it the way a
// well-written client would: every publish (single events and batches) over one long-lived
// PublishStream call per stream (acks with sequences, in order), subscribers with server-streaming
// Subscribe, each on its own connection, compression off (events are small). createVariant(mode) gives
// the plain alternatives measured beside it (bench/variants/): unary gRPC, unary Connect protocol,
// and HTTP/1.1 JSON on Polos's documented publish path.
//
//   cd ../shared/bench/peers && node run.mjs --systems nats,redis,../../../main/bench/peers-adapter.mjs
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { StreamService, StreamKind, EventView } = await import(path.join(ROOT, 'dist/gen/events/v1/events_pb.js'));
const FRAME = { live: 1, events: 2, ended: 3, closed: 4 }; // bench/subscriber-process.mjs

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const transport = (baseUrl) => createGrpcTransport({ baseUrl, acceptCompression: [], sendCompression: undefined });

const NAMES = { stream: 'event-service', 'grpc-unary': 'svc gRPC unary', 'connect-unary': 'svc Connect unary', json: 'svc JSON HTTP/1.1' };

export default function createSystem(opts) {
  return createVariant('stream')(opts);
}

/** mode: "stream" (PublishStream), "grpc-unary", "connect-unary" (binary Connect over HTTP/1.1), "json" (POST /api/v1/events/publish). */
export function createVariant(mode) {
  return (opts) => createMode(mode, opts);
}

/**
 * The subscriber process (bench/subscriber-process.mjs): subscribe() there, events forwarded back
 * in order and handed to onEvent here, where the harness takes the receive time.
 */
function startSubscriberProcess(log) {
  const child = spawn(process.execPath, [path.join(ROOT, 'bench/subscriber-process.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const subs = new Map(); // id -> { onEvent, live(), closed() }
  let nextId = 1;
  let buf = Buffer.alloc(0);
  child.stdout.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let o = 0;
    for (;;) {
      if (buf.length - o < 9) break;
      const type = buf.readUInt8(o);
      const id = buf.readUInt32LE(o + 1);
      const n = buf.readUInt32LE(o + 5);
      // A frame is handled only once it is all here.
      let end = o + 9;
      let complete = true;
      for (let i = 0; i < n; i++) {
        if (buf.length - end < 4) { complete = false; break; }
        end += 4 + buf.readUInt32LE(end);
        if (end > buf.length) { complete = false; break; }
      }
      if (!complete) break;
      const s = subs.get(id);
      if (type === FRAME.events && s) {
        for (let i = 0, p = o + 9; i < n; i++) {
          const len = buf.readUInt32LE(p);
          s.onEvent(buf.subarray(p + 4, p + 4 + len));
          p += 4 + len;
        }
      } else if (type === FRAME.live) s?.live();
      else if (type === FRAME.ended || type === FRAME.closed) {
        if (type === FRAME.ended) log(`subscriber ${id} ended`);
        s?.closed();
        subs.delete(id);
      }
      o = end;
    }
    buf = buf.subarray(o);
  });
  const exited = new Promise((r) => child.once('exit', r));
  const command = (m) => child.stdin.write(`${JSON.stringify(m)}\n`);
  return {
    subscribe(url, stream, onEvent) {
      const id = nextId++;
      return new Promise((resolve) => {
        let closed;
        const done = new Promise((r) => (closed = r));
        const handle = { async close() { command({ op: 'close', id }); await done; } };
        subs.set(id, { onEvent, live: () => resolve(handle), closed: () => { closed(); resolve(handle); } });
        command({ op: 'sub', id, url, stream });
      });
    },
    async stop() {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

function createMode(mode, { env = process.env, log = () => {} }) {
  // Publishes per PublishStream request message: a few dozen keep both sides busy at once
  // (measured at 64 in flight: 8 → 17.9–22.5k, 16 → 21.7–24.7k, 32 → 24.8–26.4k, 256 → 15.4–18.1k ev/s,
  // the last a ping-pong of one message each way per round).
  const perMessage = Number(env.BENCH_PUBLISHES_PER_MESSAGE ?? 32);
  let child;
  let baseUrl;
  let client;
  const publishers = new Map(); // stream -> { push(events) -> Promise<ack> }

  function publisherFor(stream) {
    let p = publishers.get(stream);
    if (p) return p;
    // One PublishStream call per stream, as a producer library would run it: publishes are queued,
    // what is queued goes out in request messages of up to `perMessage` publishes (the first
    // publish in the message's own fields, the rest in `more`),
    // and acks come back in send order, several per response (`combine_acks`), so the oldest
    // waiter is the one each ack answers.
    const queue = [];
    let wake;
    const waiters = [];
    const abort = new AbortController();
    async function* requests() {
      for (;;) {
        while (queue.length === 0) {
          if (abort.signal.aborted) return;
          await new Promise((r) => (wake = r));
        }
        const all = queue.splice(0, perMessage);
        yield { ...all[0], more: all.slice(1), combineAcks: true };
      }
    }
    const settle = (ack) => {
      const w = waiters.shift();
      if (!w) return;
      if (ack.error) w.reject(new Error(`${ack.error.code}: ${ack.error.message}`));
      else w.resolve(ack);
    };
    const call = (async () => {
      try {
        for await (const res of client.publishStream(requests(), { signal: abort.signal })) {
          settle(res);
          for (const more of res.more) settle(more);
        }
      } catch (err) {
        for (const w of waiters.splice(0)) w.reject(err);
      }
    })();
    let nextId = 0n;
    p = {
      push(events) {
        return new Promise((resolve, reject) => {
          waiters.push({ resolve, reject });
          queue.push({ requestId: nextId++, stream: { kind: StreamKind.TOPIC, key: stream }, events });
          wake?.();
        });
      },
      async close() {
        abort.abort();
        wake?.();
        await call;
      },
    };
    publishers.set(stream, p);
    return p;
  }

  const toInput = (buf) => ({ data: { kind: { case: 'stringValue', value: buf.toString() } } });

  // BENCH_SUBSCRIBER_PROCESS: the workloads whose subscribers run in a process of their own
  // (bench/subscriber-process.mjs; comma-separated, default "D", "none" for none). The harness
  // names each run's stream b_<workload>_<rep>_<time>.
  const ownProcess = new Set((env.BENCH_SUBSCRIBER_PROCESS ?? 'D').split(','));
  const subscriberProcessFor = (stream) => ownProcess.has(/^b_([^_]+)_/.exec(stream)?.[1]);
  let subscribers;
  const subscriberProcess = () => (subscribers ??= startSubscriberProcess(log));

  let unaryClient;
  return {
    name: NAMES[mode],

    async start() {
      const port = await freePort();
      baseUrl = `http://127.0.0.1:${port}`;
      // BENCH_CPU_PROF_DIR=<dir>: profile the server (node --cpu-prof), written when it stops.
      // BENCH_SERVER_FLAGS: extra node flags for the server (e.g. "--trace-gc").
      const prof = [...(env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${env.BENCH_CPU_PROF_DIR}`] : []), ...(env.BENCH_SERVER_FLAGS ?? '').split(' ').filter(Boolean)];
      child = spawn(process.execPath, [...prof, path.join(ROOT, 'dist/src/main.js')], {
        env: { ...env, PORT: String(port), HOST: '127.0.0.1', AUTH: 'off', LOG_LEVEL: 'warn' },
        stdio: ['ignore', env.BENCH_SERVER_FLAGS ? 'inherit' : 'ignore', 'inherit'],
      });
      for (let i = 0; ; i++) {
        try {
          const r = await fetch(`${baseUrl}/readyz`);
          if (r.ok) break;
        } catch {
          /* not up yet */
        }
        if (i > 200) throw new Error('event service did not start');
        await new Promise((r) => setTimeout(r, 50));
      }
      client = createClient(StreamService, transport(baseUrl));
      unaryClient = mode === 'connect-unary' ? createClient(StreamService, createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: true, acceptCompression: [] })) : client;
      return {
        url: baseUrl,
        server: `agent-events (node ${process.version}, ${env.MONGODB_URI ? 'MongoDB store' : 'in-memory store'}) at ${baseUrl}`,
        client: `@connectrpc/connect-node: ${{ stream: 'gRPC (h2c) PublishStream for every publish', 'grpc-unary': 'unary gRPC Publish', 'connect-unary': 'unary Connect-protocol Publish (binary, HTTP/1.1)', json: 'POST /api/v1/events/publish (HTTP/1.1 JSON, fetch)' }[mode]}; gRPC Subscribe (compact view) per subscriber`,
        serverPids: [child.pid],
        durability: env.MONGODB_URI ? 'ack after MongoDB insertMany (write concern majority), group commit' : 'ack after the in-memory store has it (not durable)',
      };
    },

    async createStream() {
      // Streams are created on first publish.
    },

    async deleteStream(stream) {
      // The server's memory after each workload (BENCH_RSS_OUT, set by bench/run.mjs): resident
      // now and its peak so far, from /proc.
      if (env.BENCH_RSS_OUT && child?.exitCode === null) {
        const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
        const kib = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
        const [, workload, rep] = /^b_([^_]+)_(\d+)_/.exec(stream) ?? [];
        fs.appendFileSync(env.BENCH_RSS_OUT, `${JSON.stringify({ system: NAMES[mode], workload, rep: Number(rep), rss_mib: kib('VmRSS') / 1024, peak_mib: kib('VmHWM') / 1024 })}\n`);
      }
      await publishers.get(stream)?.close();
      publishers.delete(stream);
      // Like the NATS and Redis adapters, leave nothing behind: the in-memory store would otherwise
      // carry every earlier workload's events (and their garbage-collection cost) into the next.
      await client.purgeStream({ stream: { kind: StreamKind.TOPIC, key: stream } });
    },

    async publish(stream, batch) {
      if (mode === 'json') {
        // Polos's documented path; the event JSON is the payload (`data`).
        const body = `{"topic":${JSON.stringify(stream)},"events":[${batch.map((b) => `{"data":${b.toString()}}`).join(',')}]}`;
        const res = await fetch(`${baseUrl}/api/v1/events/publish`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-project-id': 'default' }, body, dispatcher: undefined });
        if (res.status !== 200) throw new Error(`publish: HTTP ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
        return;
      }
      if (mode === 'stream') {
        // Single events and batches alike go over the producer's long-lived PublishStream call.
        await publisherFor(stream).push(batch.map(toInput));
        return;
      }
      await unaryClient.publish({ stream: { kind: StreamKind.TOPIC, key: stream }, events: batch.map(toInput) });
    },

    async subscribe(stream, onEvent) {
      if (subscriberProcessFor(stream)) return subscriberProcess().subscribe(baseUrl, stream, onEvent);
      const own = createClient(StreamService, transport(baseUrl)); // its own HTTP/2 connection
      const abort = new AbortController();
      let ready;
      const started = new Promise((r) => (ready = r));
      const done = (async () => {
        try {
          // The COMPACT view: flat events with the data as JSON text, much less to decode (a
          // consumer running many subscriptions in one process is bound by decoding).
          const it = own.subscribe({ stream: { kind: StreamKind.TOPIC, key: stream }, view: EventView.COMPACT }, { signal: abort.signal });
          for await (const res of it) {
            ready(); // the first (empty) response: the subscription is live
            // The payload is the event's JSON text: JSON-published events carry it as their data
            // (so data_json is that text), the others as a string (data_json is that string, quoted).
            for (const e of res.compactEvents) onEvent(e.dataJson.charCodeAt(0) === 34 ? JSON.parse(e.dataJson) : e.dataJson);
          }
        } catch (err) {
          if (!abort.signal.aborted) log(`subscriber ended: ${err}`);
        }
      })();
      await Promise.race([started, done]);
      return {
        async close() {
          abort.abort();
          await done;
        },
      };
    },

    async stop() {
      for (const p of publishers.values()) await p.close().catch(() => {});
      publishers.clear();
      await subscribers?.stop();
      subscribers = undefined;
      if (child && child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}
