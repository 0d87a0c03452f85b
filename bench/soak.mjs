// Soak: the service under a steady 2,000 events/s with 10 subscribers for 10 minutes (by default),
// sampling the server's RSS every 10 s. Reports the RSS slope (least squares, MiB per minute) and
// whether every subscriber got every event once, in order. Loopback only; stops by itself.
//   npm run build && MEMORY_RETAIN_EVENTS=100000 node bench/soak.mjs [--minutes 10] [--rate 2000] [--subscribers 10]
// (The in-memory store keeps every event unless MEMORY_RETAIN_EVENTS bounds it, so without it RSS
// grows with the data by design; with MONGODB_URI the events live in MongoDB.)
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import createSystem from './peers-adapter.mjs';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, rate: { type: 'string', default: '2000' }, subscribers: { type: 'string', default: '10' }, out: { type: 'string' } } });
const minutes = Number(values.minutes);
const rate = Number(values.rate);
const subscribers = Number(values.subscribers);

const sys = createSystem({ env: process.env, log: (m) => console.error(m) });
const info = await sys.start();
const pid = info.serverPids[0];
const rssMiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const stream = `soak-${Date.now()}`;
await sys.createStream(stream);

const got = Array.from({ length: subscribers }, () => ({ next: 1, bad: 0 }));
const subs = [];
for (let i = 0; i < subscribers; i++) {
  subs.push(
    await sys.subscribe(stream, (payload) => {
      const seq = Number(/"seq":(\d+)/.exec(String(payload))[1]);
      const s = got[i];
      if (seq === s.next) s.next++;
      else s.bad++;
    }),
  );
}

const samples = [];
const t0 = Date.now();
const end = t0 + minutes * 60_000;
let sent = 0;
let failed = 0;
// The server's V8 heap in use (prom-client's nodejs_heap_size_used_bytes), MiB.
const heapMiB = async () => Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(await (await fetch(`${info.url}/metrics`)).text())[1]) / 2 ** 20;
const heap = [];
const sampler = setInterval(async () => {
  const at = (Date.now() - t0) / 60_000;
  const rss = rssMiB();
  samples.push([at, rss]);
  const used = await heapMiB().catch(() => NaN);
  heap.push([at, used]);
  console.error(`t=${((Date.now() - t0) / 1000).toFixed(0)}s rss=${rss.toFixed(1)} MiB heap used=${used.toFixed(1)} MiB sent=${sent} min delivered=${Math.min(...got.map((g) => g.next - 1))}`);
}, 5_000);
// Open loop: every 10 ms publish rate/100 events, each event its own publish (PublishStream).
while (Date.now() < end) {
  const tick = Date.now();
  const n = Math.round(rate / 100);
  for (let k = 0; k < n; k++) {
    const seq = ++sent;
    sys.publish(stream, [Buffer.from(JSON.stringify({ seq, ts: tick, pad: 'x'.repeat(120) }))]).catch(() => failed++);
  }
  await new Promise((r) => setTimeout(r, Math.max(0, 10 - (Date.now() - tick))));
}
const drainBy = Date.now() + 30_000;
while (got.some((g) => g.next - 1 < sent) && Date.now() < drainBy) await new Promise((r) => setTimeout(r, 100));
clearInterval(sampler);
for (const s of subs) await s.close();
await sys.stop();

// Least-squares slopes over time, after the first minute (warm-up): of RSS, and of the heap's
// floor (the least heap in use in each minute, i.e. after its collections: what is really kept).
const warm = (pts) => pts.filter(([m]) => m >= Math.min(1, minutes / 5));
function slopeOf(pts) {
  const n = pts.length;
  const mx = pts.reduce((a, [x]) => a + x, 0) / n;
  const my = pts.reduce((a, [, y]) => a + y, 0) / n;
  return pts.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / pts.reduce((a, [x]) => a + (x - mx) ** 2, 0);
}
const floors = [];
for (const [m, y] of warm(heap.filter(([, y]) => Number.isFinite(y)))) {
  const minute = Math.floor(m);
  if (!floors[minute] || y < floors[minute][1]) floors[minute] = [minute + 0.5, y];
}
const heapFloor = floors.filter(Boolean);
const slope = slopeOf(warm(samples));
const result = {
  store: process.env.MONGODB_URI ? 'mongodb' : `memory (MEMORY_RETAIN_EVENTS=${process.env.MEMORY_RETAIN_EVENTS ?? '0'})`,
  minutes,
  rate,
  subscribers,
  sent,
  publish_failures: failed,
  all_delivered_in_order: got.every((g) => g.next - 1 === sent && g.bad === 0),
  rss_mib: { first: samples[0]?.[1], last: samples[samples.length - 1]?.[1], max: Math.max(...samples.map(([, y]) => y)) },
  rss_slope_mib_per_min: Number(slope.toFixed(3)),
  heap_used_floor_mib_per_minute: heapFloor.map(([, y]) => Number(y.toFixed(1))),
  heap_used_floor_slope_mib_per_min: Number(slopeOf(heapFloor).toFixed(3)),
  samples,
  heap_used_samples: heap,
};
console.log(JSON.stringify({ ...result, samples: undefined, heap_used_samples: undefined }, null, 2));
if (values.out) fs.writeFileSync(values.out, JSON.stringify(result, null, 2));
process.exit(result.all_delivered_in_order ? 0 : 1);
