// npm run bench: measures this service beside NATS JetStream and Redis Streams in one run, with
// the peer harness in ../shared/bench/peers (same workloads A1, A64, B, C, D for every system).
// The service is measured as a well-written client uses it (PublishStream for single events,
// batches with Publish, server-streaming Subscribe) and with plain unary gRPC, unary Connect
// protocol and HTTP/1.1 JSON on Polos's documented path. NATS and Redis are included when their
// servers are installed (../shared/bench/peers/setup.sh). Everything runs on 127.0.0.1 and stops
// by itself, in under 3 minutes (one repetition). Extra arguments go to the harness (e.g.
// --reps 3, --scale 0.3, --only A64,D).
// Then the documented JSON publish paths of every dialect under wrk, next to a bare node:http
// server answering 201 (bench/wrk.mjs; wrk is Debian's package: apt-get install -y wrk; skipped
// with a note when it is missing or with --no-wrk).
// Last, issue 20's targets as ratios (bench/targets.mjs). Writes bench/results.md and bench/results.json.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Beside the project (/work/main -> /work/shared), also from a worktree one level deeper
// (/work/wt/<name>), or where BENCH_PEERS_DIR says.
const SHARED = [process.env.BENCH_PEERS_DIR, path.resolve(ROOT, '../shared/bench/peers'), path.resolve(ROOT, '../../shared/bench/peers')].find((d) => d && fs.existsSync(path.join(d, 'run.mjs'))) ?? path.resolve(ROOT, '../shared/bench/peers');
if (!fs.existsSync(path.join(SHARED, 'run.mjs'))) {
  console.error(`peer harness not found at ${SHARED} (the shared/ folder beside the project)`);
  process.exit(2);
}
if (!fs.existsSync(path.join(ROOT, 'dist/src/main.js'))) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
const HARNESS = harnessWithClients();

const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const systems = [];
if (has('nats-server')) systems.push('nats');
else console.error('nats-server not installed: skipping NATS JetStream (see ../shared/bench/peers/setup.sh)');
if (has('redis-server')) systems.push('redis');
else console.error('redis-server not installed: skipping Redis Streams');
systems.push(path.join(ROOT, 'bench/peers-adapter.mjs'));
// --no-variants: only the service as a well-written client uses it (a run of three repetitions
// with every column takes over the harness's 15-minute limit on a heavily loaded VM).
if (!process.argv.includes('--no-variants')) for (const v of ['grpc-unary', 'connect-unary', 'json']) systems.push(path.join(ROOT, `bench/variants/${v}.mjs`));

// One repetition unless asked for more (`-- --reps 3` gives medians of 3 in about 8 minutes).
const noWrk = process.argv.includes('--no-wrk');
const extra = process.argv.slice(2).filter((a) => a !== '--no-wrk' && a !== '--no-variants');
const reps = extra.includes('--reps') ? [] : ['--reps', '1'];
const args = ['run.mjs', '--systems', systems.join(','), '--out', path.join(ROOT, 'bench/results.md'), ...reps, ...extra];
const started = Date.now();
const rssFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-rss-')), 'rss.jsonl');
const r = spawnSync(process.execPath, args, { cwd: HARNESS, stdio: 'inherit', timeout: 15 * 60 * 1000, env: { ...process.env, BENCH_RSS_OUT: rssFile } });
appendRss(rssFile);
fs.rmSync(path.dirname(rssFile), { recursive: true, force: true });
// Also after a failed workload (the harness still wrote its report): the two parts are independent.
if (!noWrk && harnessReported()) await appendWrk();
if (harnessReported()) await appendTargets();
process.exit(r.status ?? 1);

/** Issue 20's targets as ratios (bench/targets.mjs), last in the report and on stdout. */
async function appendTargets() {
  const { targetsMarkdown } = await import('./targets.mjs');
  const md = targetsMarkdown(JSON.parse(fs.readFileSync(path.join(ROOT, 'bench/results.json'), 'utf8')));
  fs.appendFileSync(path.join(ROOT, 'bench/results.md'), md);
  console.log(md);
}

/**
 * The shared harness is read-only and ships without its clients (NATS, ioredis): it runs from a
 * copy in node_modules/.cache/bench-peers with `npm ci` done there, redone when the shared copy
 * changes (its package-lock.json or run.mjs differ).
 */
function harnessWithClients() {
  if (fs.existsSync(path.join(SHARED, 'node_modules'))) return SHARED;
  const copy = path.join(ROOT, 'node_modules/.cache/bench-peers');
  const same = (f) => fs.existsSync(path.join(copy, f)) && fs.readFileSync(path.join(copy, f)).equals(fs.readFileSync(path.join(SHARED, f)));
  if (!(same('package-lock.json') && same('run.mjs') && fs.existsSync(path.join(copy, 'node_modules')))) {
    fs.rmSync(copy, { recursive: true, force: true });
    fs.cpSync(SHARED, copy, { recursive: true, filter: (src) => !/\/(node_modules|results\.(md|json))$/.test(src) });
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: copy, stdio: 'inherit' });
  }
  return copy;
}

/** True when the harness wrote this run's report (it does not when interrupted). */
function harnessReported() {
  const json = path.join(ROOT, 'bench/results.json');
  return fs.existsSync(json) && Date.parse(JSON.parse(fs.readFileSync(json, 'utf8')).meta?.date ?? '') >= started;
}

/** The JSON publish paths under wrk (bench/wrk.mjs), with the same --reps/--scale, after the harness. */
async function appendWrk() {
  const { hasWrk, WRK_MISSING, runWrk, wrkMarkdown } = await import('./wrk.mjs');
  const out = path.join(ROOT, 'bench/results.md');
  if (!hasWrk()) {
    console.error(WRK_MISSING);
    fs.appendFileSync(out, `\n## JSON publish paths under wrk\n\n${WRK_MISSING}.\n`);
    return;
  }
  const num = (k, d) => (extra.includes(k) ? Number(extra[extra.indexOf(k) + 1]) : d);
  const res = await runWrk({ reps: num('--reps', 1), scale: num('--scale', 1) });
  const json = path.join(ROOT, 'bench/results.json');
  const all = JSON.parse(fs.readFileSync(json, 'utf8'));
  const nats = all.results.filter((x) => x.wl === 'A64' && x.system === 'nats-jetstream' && x.r).map((x) => x.r.eventsPerSec).sort((a, b) => a - b);
  const md = wrkMarkdown(res, nats.length ? nats[Math.floor((nats.length - 1) / 2)] : NaN);
  fs.appendFileSync(out, md);
  fs.writeFileSync(json, JSON.stringify({ ...all, wrk: res }, null, 2));
  console.log(md);
}

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
