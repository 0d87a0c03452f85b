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
const r = spawnSync(process.execPath, args, { cwd: HARNESS, stdio: 'inherit', timeout: 15 * 60 * 1000 });
process.exit(r.status ?? 1);
