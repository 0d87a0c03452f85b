// Two builds of the service back to back on one JSON publish path under wrk, alternating, each in
// a server of its own: req/s and the server's CPU per request (what a per-request cut changes; on
// a shared VM the CPU per request moves less than req/s). Each checkout needs `npm run build`.
//   node bench/wrk-ab.mjs --before /path/to/old-checkout [--after .] [--path polos|durable] [--pairs 6] [--seconds 3]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const arg = (k, d) => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : d);
const builds = { before: path.resolve(arg('--before', '')), after: path.resolve(arg('--after', path.join(HERE, '..'))) };
if (!arg('--before')) throw new Error('--before <checkout with dist/> is required');
const which = arg('--path', 'polos');
const pairs = Number(arg('--pairs', 6));
const seconds = Number(arg('--seconds', 3));
const EVENT = (() => {
  const head = '{"seq":1,"ts":12345.6789,"id":"evt-1","type":"bench.event.v1","source":"bench/peers","data":{"pad":"';
  return `${head}${'x'.repeat(200 - head.length - 3)}"}}`;
})();
const PATHS = {
  polos: { path: '/api/v1/events/publish', body: `{"topic":"wrk-polos","events":[{"data":${EVENT}}]}` },
  durable: { path: '/v1/stream/wrk-ds', body: EVENT, setup: { method: 'PUT', path: '/v1/stream/wrk-ds' } },
};
const target = PATHS[which];
const HEADERS = { 'content-type': 'application/json', 'x-project-id': 'default' };
const TICK_MS = 1000 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
const cpuTicks = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
};
const freePort = () => new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => r(port)); }); });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wrk-ab-'));
const bodyFile = path.join(tmp, 'body.json');
fs.writeFileSync(bodyFile, target.body);
const wrk = (url, secs) => {
  const env = { ...process.env, WRK_BODY: bodyFile, WRK_HEADERS: Object.entries(HEADERS).map(([k, v]) => `${k}: ${v}`).join('\n') };
  const r = spawnSync('wrk', ['-t2', '-c64', `-d${secs}s`, '--timeout', '10s', '-s', path.join(HERE, 'wrk/post.lua'), url], { env, encoding: 'utf8' });
  return JSON.parse(/WRK_RESULT (\{.*\})/.exec(r.stdout)[1]);
};

async function measure(root) {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(root, 'dist/src/main.js')], { env: { ...process.env, MEMORY_RETAIN_EVENTS: '20000', PORT: String(port), HOST: '127.0.0.1', AUTH: 'off', LOG_LEVEL: 'warn' }, stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; ; i++) {
      try { if ((await fetch(`${base}/healthz`)).ok) break; } catch { if (i > 100) throw new Error(`${root}: the service did not start`); }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (target.setup) await fetch(base + target.setup.path, { method: target.setup.method, headers: HEADERS });
    wrk(base + target.path, 1);
    const c0 = cpuTicks(child.pid);
    const w = wrk(base + target.path, seconds);
    const cpuMs = (cpuTicks(child.pid) - c0) * TICK_MS;
    return { rps: (w.requests / w.duration_us) * 1e6, usPerRequest: (cpuMs * 1000) / w.requests, non2xx: w.non2xx };
  } finally {
    child.kill('SIGTERM');
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const runs = { before: [], after: [] };
for (let i = 1; i <= pairs; i++) {
  for (const k of ['before', 'after']) {
    const m = await measure(builds[k]);
    runs[k].push(m);
    console.error(`[${i}/${pairs}] ${k.padEnd(6)} ${which} ${Math.round(m.rps)} req/s  ${m.usPerRequest.toFixed(1)} µs CPU/request${m.non2xx ? `  non-2xx ${m.non2xx}` : ''}`);
  }
}
fs.rmSync(tmp, { recursive: true, force: true });
for (const k of ['before', 'after']) console.log(`${k}: median ${Math.round(median(runs[k].map((r) => r.rps)))} req/s, ${median(runs[k].map((r) => r.usPerRequest)).toFixed(1)} µs CPU/request (${builds[k]})`);
