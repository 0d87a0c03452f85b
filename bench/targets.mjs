// The throughput targets of issue 20 (item 5) as ratios, from one run's bench/results.json: what
// `npm run bench` prints last. Each ratio is of the medians over the repetitions (per-run ratios
// in brackets, repetitions paired by number), as the issue states them; whether it is met is a
// plain comparison, nothing rounded in the service's favour.
//   node bench/targets.mjs [bench/results.json]   (standalone: the table for a finished run)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SERVICE = 'event-service';

/** Each target: the workload, the metric, the peer, which way is better, and the bound. */
export const TARGETS = [
  { id: 'B', label: 'B batches ≥ 1.0 × Redis Streams (events/s)', wl: 'B', metric: 'eventsPerSec', peer: 'redis-streams', higherIsBetter: true, bound: 1.0 },
  { id: 'A64', label: 'A64 streaming ≥ 1.5 × NATS JetStream (events/s)', wl: 'A64', metric: 'eventsPerSec', peer: 'nats-jetstream', higherIsBetter: true, bound: 1.5 },
  { id: 'C', label: 'C end-to-end p99 ≤ 1.5 × NATS JetStream', wl: 'C', metric: 'latP99', peer: 'nats-jetstream', higherIsBetter: false, bound: 1.5 },
  { id: 'D', label: 'D fan-out p99 ≤ 1.0 × Redis Streams, all delivered in order', wl: 'D', metric: 'latP99', peer: 'redis-streams', higherIsBetter: false, bound: 1.0, inOrder: true },
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

/** Rows for the harness targets and the wrk paths: { label, ratio, perRun, met, detail }. */
export function targetRows(all) {
  const rows = [];
  for (const t of TARGETS) {
    const of = (system) => all.results.filter((x) => x.wl === t.wl && x.system === system && x.r && Number.isFinite(x.r[t.metric]));
    const ours = of(SERVICE);
    const peer = of(t.peer);
    if (ours.length === 0 || peer.length === 0) {
      rows.push({ label: t.label, ratio: NaN, perRun: [], met: false, detail: `not measured (${ours.length === 0 ? SERVICE : t.peer} has no ${t.wl} result)` });
      continue;
    }
    const a = median(ours.map((x) => x.r[t.metric]));
    const b = median(peer.map((x) => x.r[t.metric]));
    const ratio = a / b;
    const perRun = ours.map((x) => {
      const p = peer.find((y) => y.rep === x.rep);
      return p ? x.r[t.metric] / p.r[t.metric] : NaN;
    });
    const inOrder = !t.inOrder || ours.every((x) => x.r.complete === true && x.r.lost === 0 && x.r.duplicates === 0 && x.r.reordered === 0);
    const met = (t.higherIsBetter ? ratio >= t.bound : ratio <= t.bound) && inOrder;
    const unit = t.metric === 'eventsPerSec' ? ' ev/s' : ' ms';
    const fmt = (v) => (t.metric === 'eventsPerSec' ? Math.round(v).toLocaleString('en-US') : v.toPrecision(3));
    const order = t.inOrder ? `; all delivered once, in order: ${ours.filter((x) => x.r.complete && !x.r.lost && !x.r.duplicates && !x.r.reordered).length}/${ours.length} runs` : '';
    rows.push({ label: t.label, ratio, perRun, met, detail: `${fmt(a)} / ${fmt(b)}${unit}${order}` });
  }
  for (const r of all.wrk?.rows ?? []) {
    if (r.target === 'floor') continue;
    rows.push({ label: `JSON ${r.label} ≥ 0.6 × node:http floor (wrk)`, ratio: r.vs_floor, perRun: r.vs_floor_per_rep, met: r.vs_floor >= 0.6, detail: `${Math.round(r.rps).toLocaleString('en-US')} req/s` });
  }
  return rows;
}

export function targetsMarkdown(all) {
  const rows = targetRows(all);
  let md = '\n## Issue 20 targets (item 5), this run\n\nRatios of the medians (per-run ratios in brackets, repetitions paired by number).\n\n';
  md += '| target | ratio | per run | this service / peer | met |\n|---|---:|---|---|---|\n';
  for (const r of rows) {
    const x = (v) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
    md += `| ${r.label} | **${x(r.ratio)} ×** | ${r.perRun.map(x).join(', ')} | ${r.detail} | ${r.met ? 'yes' : 'no'} |\n`;
  }
  return md;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results.json');
  console.log(targetsMarkdown(JSON.parse(fs.readFileSync(file, 'utf8'))));
}
