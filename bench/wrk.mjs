// The documented JSON publish paths (what every vendor SDK uses) under wrk, next to the platform's
// floor: a minimal node:http server answering 201 (bench/wrk/floor-server.mjs), on the same
// machine in the same run. `npm run bench` runs it after the peer harness and adds its table to
// bench/results.md (and `wrk` to bench/results.json); standalone: `node bench/wrk.mjs [--reps N]
// [--scale F]` (needs `npm run build`). wrk is Debian's package: `apt-get install -y wrk`.
//
// Each target: 64 connections (wrk -t2 -c64), one event per request (the harness's 200-byte event
// as the payload), a fixed request (bench/wrk/post.lua: no Lua per request), 1 s warm-up then 3 s
// measured; repetitions interleaved (rep -> target) so drift hits every target alike.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { createVariant } = await import(pathToFileURL(path.join(HERE, 'peers-adapter.mjs')).href);

export const hasWrk = () => spawnSync('sh', ['-c', 'command -v wrk']).status === 0;
export const WRK_MISSING = 'wrk not installed: skipping the JSON publish paths (Debian: apt-get install -y wrk)';

/** The harness's 200-byte event shape (../shared/bench/peers/lib/event.mjs), as JSON text. */
const EVENT = (() => {
  const head = '{"seq":1,"ts":12345.6789,"id":"evt-1","type":"bench.event.v1","source":"bench/peers","data":{"pad":"';
  return `${head}${'x'.repeat(200 - head.length - 3)}"}}`;
})();
const JSON_HEADERS = { 'content-type': 'application/json', 'x-project-id': 'default' };

/**
 * The paths: how each is set up, its request, and the status its documentation promises (checked
 * once before wrk runs, with the reply's body, and counted by wrk as non-2xx afterwards).
 */
const TARGETS = [
  { id: 'floor', label: 'node:http floor (201, no work)', path: '/', body: () => `{"topic":"wrk","events":[{"data":${EVENT}}]}`, status: 201 },
  { id: 'polos', label: 'Polos POST /api/v1/events/publish', path: '/api/v1/events/publish', body: () => `{"topic":"wrk-polos","events":[{"data":${EVENT}}]}`, status: 200, check: (j) => Array.isArray(j.event_ids) || Array.isArray(j.events) || typeof j === 'object' },
  { id: 'kubiya', label: 'Kubiya POST /api/v1/executions/{id}/events', path: '/api/v1/executions/wrk-exec/events', body: () => `{"event_type":"bench","data":${EVENT}}`, status: 202, check: (j) => j.success === true },
  { id: 'sailhouse', label: 'Sailhouse POST /topics/{topic}/events', path: '/topics/wrk-topic/events', body: () => `{"data":${EVENT}}`, status: 201, check: (j) => typeof j.id === 'string' },
  {
    id: 'terminaluse',
    label: 'TerminalUse POST /tasks/{id}/events',
    async setup(url) {
      const r = await fetch(`${url}/tasks`, { method: 'POST', headers: JSON_HEADERS, body: '{"agent_name":"bench/wrk"}' });
      if (r.status !== 201) throw new Error(`TerminalUse POST /tasks: HTTP ${r.status} ${await r.text()}`);
      return `/tasks/${(await r.json()).id}/events`;
    },
    body: () => `{"content":{"type":"data","data":${EVENT}}}`,
    status: 201,
    check: (j) => typeof j.id === 'string',
  },
  {
    id: 'durable',
    label: 'Durable Streams POST /v1/stream/{name} (JSON append)',
    async setup(url) {
      const r = await fetch(`${url}/v1/stream/wrk-ds`, { method: 'PUT', headers: JSON_HEADERS });
      if (r.status !== 201 && r.status !== 200) throw new Error(`Durable Streams PUT: HTTP ${r.status} ${await r.text()}`);
      return '/v1/stream/wrk-ds';
    },
    body: () => EVENT,
    status: 204,
  },
];

function cpuTicks(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]); // utime + stime
  } catch {
    return NaN;
  }
}
const TICK_MS = 1000 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

function wrk(url, bodyFile, seconds) {
  const env = { ...process.env, WRK_BODY: bodyFile, WRK_HEADERS: Object.entries(JSON_HEADERS).map(([k, v]) => `${k}: ${v}`).join('\n') };
  const r = spawnSync('wrk', ['-t2', '-c64', `-d${seconds}s`, '--timeout', '10s', '-s', path.join(HERE, 'wrk/post.lua'), url], { env, encoding: 'utf8', timeout: (seconds + 30) * 1000 });
  const line = /WRK_RESULT (\{.*\})/.exec(r.stdout ?? '');
  if (!line) throw new Error(`wrk failed (status ${r.status}): ${r.stderr || r.stdout}`);
  return JSON.parse(line[1]);
}

async function startFloor() {
  const child = spawn(process.execPath, [path.join(HERE, 'wrk/floor-server.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port] = await readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]().next().then((x) => [x.value]);
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

/** Runs every target `reps` times; returns { runs, rows } (rows: medians per target). */
export async function runWrk({ reps = 1, scale = 1, log = console.error, env = process.env } = {}) {
  const seconds = Math.max(1, Math.round(3 * scale));
  const warm = Math.max(1, Math.round(1 * scale));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-wrk-'));
  const floor = await startFloor();
  // The in-memory store keeps each stream's newest 20,000 events (MEMORY_RETAIN_EVENTS): every
  // path stores ~100,000 events a run, which would otherwise fill MEMORY_MAX_BYTES (503s).
  const service = createVariant('json')({ env: { MEMORY_RETAIN_EVENTS: '20000', ...env }, log });
  const runs = [];
  try {
    const info = await service.start();
    const targets = [];
    for (const t of TARGETS) {
      const base = t.id === 'floor' ? floor.url : info.url;
      const p = t.setup ? await t.setup(base) : t.path;
      const bodyFile = path.join(tmp, `${t.id}.json`);
      fs.writeFileSync(bodyFile, t.body());
      // The documented answer, checked once with its body before wrk counts only statuses.
      const r = await fetch(base + p, { method: 'POST', headers: JSON_HEADERS, body: t.body() });
      const text = await r.text();
      if (r.status !== t.status) throw new Error(`${t.label}: HTTP ${r.status} (expected ${t.status}) ${text}`);
      if (t.check && !t.check(JSON.parse(text))) throw new Error(`${t.label}: unexpected reply ${text}`);
      targets.push({ ...t, url: base + p, bodyFile, pid: t.id === 'floor' ? floor.pid : info.serverPids[0] });
    }
    for (let rep = 1; rep <= reps; rep++) {
      for (const t of targets) {
        wrk(t.url, t.bodyFile, warm);
        const c0 = cpuTicks(t.pid);
        const w = wrk(t.url, t.bodyFile, seconds);
        const cpu = ((cpuTicks(t.pid) - c0) * TICK_MS * 100) / (w.duration_us / 1000);
        const rps = (w.requests / w.duration_us) * 1e6;
        const errors = w.non2xx + w.connect + w.read + w.write + w.timeout;
        runs.push({ rep, target: t.id, label: t.label, rps, p50_ms: w.p50_us / 1000, p99_ms: w.p99_us / 1000, max_ms: w.max_us / 1000, server_cpu_pct: cpu, errors, wrk: w });
        log(`[wrk ${rep}/${reps}] ${t.id.padEnd(11)} ${Math.round(rps).toLocaleString('en-US')} req/s  p50 ${(w.p50_us / 1000).toFixed(2)} ms  p99 ${(w.p99_us / 1000).toFixed(2)} ms  cpu srv ${Math.round(cpu)}%${errors ? `  ERRORS ${errors} (non-2xx ${w.non2xx})` : ''}`);
      }
    }
  } finally {
    await service.stop().catch(() => {});
    await floor.stop().catch(() => {});
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const floorRps = median(runs.filter((r) => r.target === 'floor').map((r) => r.rps));
  // A run with any error (non-2xx, socket errors) measured something else: left out of the medians.
  const rows = TARGETS.map((t) => {
    const rs = runs.filter((r) => r.target === t.id && r.errors === 0);
    const rps = median(rs.map((r) => r.rps));
    return {
      target: t.id,
      label: t.label,
      rps,
      vs_floor: rps / floorRps,
      vs_floor_per_rep: rs.map((r) => r.rps / runs.find((f) => f.target === 'floor' && f.rep === r.rep).rps), // error-free runs
      p50_ms: median(rs.map((r) => r.p50_ms)),
      p99_ms: median(rs.map((r) => r.p99_ms)),
      server_cpu_pct: median(rs.map((r) => r.server_cpu_pct)),
      errors: runs.filter((r) => r.target === t.id).reduce((a, r) => a + r.errors, 0),
    };
  });
  return { seconds, warm, runs, rows };
}

/** The markdown section; natsA64: NATS JetStream's A64 ev/s median in the same run (or NaN). */
export function wrkMarkdown({ rows, seconds, warm, runs }, natsA64) {
  const int = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
  const x2 = (x) => (Number.isFinite(x) ? `${x.toFixed(2)} ×` : 'n/a');
  const reps = Math.max(...runs.map((r) => r.rep));
  let md = `\n## JSON publish paths under wrk\n\n\`wrk -t2 -c64 -d${seconds}s\` (after ${warm} s of warm-up) per path, one event per request (the harness's 200-byte event as the payload), median of ${reps} run(s); the floor is a bare \`node:http\` server that reads the body and answers 201 (\`bench/wrk/floor-server.mjs\`), measured in the same run. The target is ≥ 0.6 × the floor. NATS JetStream's A64 (64 publishes in flight, its own client) from the table above: ${int(natsA64)} ev/s.\n\n`;
  md += '| path | req/s | × floor (per run) | × NATS A64 | p50 / p99 ms | server CPU % | errors (runs with any are left out) |\n|---|---:|---:|---:|---:|---:|---:|\n';
  for (const r of rows) {
    md += `| ${r.label} | ${int(r.rps)} | ${r.target === 'floor' ? '1' : `**${x2(r.vs_floor)}** (${r.vs_floor_per_rep.map((v) => v.toFixed(2)).join(', ')})`} | ${x2(r.rps / natsA64)} | ${r.p50_ms.toFixed(2)} / ${r.p99_ms.toFixed(2)} | ${int(r.server_cpu_pct)} | ${r.errors} |\n`;
  }
  return md;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (!hasWrk()) {
    console.error(WRK_MISSING);
    process.exit(2);
  }
  const arg = (k, d) => (process.argv.includes(k) ? Number(process.argv[process.argv.indexOf(k) + 1]) : d);
  const res = await runWrk({ reps: arg('--reps', 1), scale: arg('--scale', 1) });
  console.log(wrkMarkdown(res, NaN));
}
