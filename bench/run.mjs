// npm run bench: measures this service beside NATS JetStream and Redis Streams in one run, with
// the peer harness in ../shared/bench/peers (same workloads A1, A64, B, C, D for every system).
// The service is measured as a well-written client uses it (PublishStream for single events,
// batches with Publish, server-streaming Subscribe) and with plain unary gRPC, unary Connect
// protocol and HTTP/1.1 JSON on Polos's documented path. NATS and Redis are included when their
// servers are installed (../shared/bench/peers/setup.sh). Everything runs on 127.0.0.1 and stops
// by itself, in under 3 minutes (one repetition). Extra arguments go to the harness (e.g.
// --reps 3, --scale 0.3, --only A64,D).
// Writes bench/results.md and bench/results.json.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HARNESS = path.resolve(ROOT, '../shared/bench/peers');
if (!fs.existsSync(path.join(HARNESS, 'run.mjs'))) {
  console.error(`peer harness not found at ${HARNESS} (the shared/ folder beside the project)`);
  process.exit(2);
}
if (!fs.existsSync(path.join(ROOT, 'dist/src/main.js'))) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
if (!fs.existsSync(path.join(HARNESS, 'node_modules'))) execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: HARNESS, stdio: 'inherit' });

const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const systems = [];
if (has('nats-server')) systems.push('nats');
else console.error('nats-server not installed: skipping NATS JetStream (see ../shared/bench/peers/setup.sh)');
if (has('redis-server')) systems.push('redis');
else console.error('redis-server not installed: skipping Redis Streams');
systems.push(path.join(ROOT, 'bench/peers-adapter.mjs'));
for (const v of ['grpc-unary', 'connect-unary', 'json']) systems.push(path.join(ROOT, `bench/variants/${v}.mjs`));

// One repetition unless asked for more (`-- --reps 3` gives medians of 3 in about 8 minutes).
const extra = process.argv.slice(2);
const reps = extra.includes('--reps') ? [] : ['--reps', '1'];
const args = ['run.mjs', '--systems', systems.join(','), '--out', path.join(ROOT, 'bench/results.md'), ...reps, ...extra];
const rssFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-rss-')), 'rss.jsonl');
const r = spawnSync(process.execPath, args, { cwd: HARNESS, stdio: 'inherit', timeout: 15 * 60 * 1000, env: { ...process.env, BENCH_RSS_OUT: rssFile } });
appendRss(rssFile);
fs.rmSync(path.dirname(rssFile), { recursive: true, force: true });
process.exit(r.status ?? 1);

/** Adds the service's memory (RSS after each workload, median over repetitions; peak) to the report. */
function appendRss(file) {
  if (!fs.existsSync(file)) return;
  const rows = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const systemNames = [...new Set(rows.map((x) => x.system))];
  const workloads = [...new Set(rows.map((x) => x.workload))];
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  const fmt = (v) => (Number.isFinite(v) ? v.toFixed(0) : '–');
  let md = '\n## Server memory (this service)\n\nRSS of the service process after each workload (MiB, median over repetitions), and its peak (VmHWM) over the whole run; each column is its own server process.\n\n';
  md += `| after workload | ${systemNames.join(' | ')} |\n|---|${systemNames.map(() => '---:').join('|')}|\n`;
  for (const w of workloads) md += `| ${w} | ${systemNames.map((s) => fmt(median(rows.filter((x) => x.system === s && x.workload === w).map((x) => x.rss_mib)))).join(' | ')} |\n`;
  md += `| peak | ${systemNames.map((s) => fmt(Math.max(...rows.filter((x) => x.system === s).map((x) => x.peak_mib)))).join(' | ')} |\n`;
  const out = path.join(ROOT, 'bench/results.md');
  if (fs.existsSync(out)) fs.appendFileSync(out, md);
  const json = path.join(ROOT, 'bench/results.json');
  if (fs.existsSync(json)) fs.writeFileSync(json, JSON.stringify({ ...JSON.parse(fs.readFileSync(json, 'utf8')), service_memory: rows }, null, 2));
  console.log(md);
}
