// Summarises a V8 .cpuprofile (node --cpu-prof; BENCH_CPU_PROF_DIR for the bench's server): self
// time by function and by source area (this service's src/ and gen/, each dependency, node
// internals, GC, idle), and the total time under chosen functions.
//   node bench/prof-summary.mjs /tmp/prof/CPU.*.cpuprofile [--top 30] [--under name,name]
import fs from 'node:fs';

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const files = args.filter((a, i) => !a.startsWith('--') && !['--top', '--under'].includes(args[i - 1]));
const top = Number(opt('--top', 30));
const under = (opt('--under', '') || '').split(',').filter(Boolean);

function area(url) {
  if (!url) return '(native/VM)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 13).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const m = /\/(dist\/)?(src|gen)\/(.*)$/.exec(url);
  if (m) return `${m[2]}/${m[3].replace(/\.js$/, '')}`;
  if (url.startsWith('node:')) return 'node internals';
  return url.replace(/^file:\/\//, '');
}

for (const file of files) {
  const p = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map(); // node id -> µs
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  let total = 0;
  let idle = 0;
  const fnSelf = new Map();
  const areaSelf = new Map();
  const underTotal = new Map(under.map((u) => [u, 0]));
  const incl = new Map(); // function key -> µs with it anywhere on the stack (counted once per sample)
  for (const [id, us] of self) {
    const n = byId.get(id);
    const cf = n.callFrame;
    total += us;
    if (cf.functionName === '(idle)') { idle += us; continue; }
    const key = `${cf.functionName || '(anonymous)'} ${area(cf.url)}:${cf.lineNumber + 1}`;
    fnSelf.set(key, (fnSelf.get(key) ?? 0) + us);
    const a = ['(garbage collector)', '(program)'].includes(cf.functionName) ? cf.functionName : area(cf.url);
    areaSelf.set(a, (areaSelf.get(a) ?? 0) + us);
    const onStack = new Set();
    for (let x = id; x !== undefined; x = parent.get(x)) {
      const c = byId.get(x).callFrame;
      onStack.add(`${c.functionName || '(anonymous)'} ${area(c.url)}:${c.lineNumber + 1}`);
    }
    for (const k of onStack) incl.set(k, (incl.get(k) ?? 0) + us);
    if (under.length) {
      const seen = new Set();
      for (let x = id; x !== undefined; x = parent.get(x)) {
        const name = byId.get(x).callFrame.functionName;
        if (underTotal.has(name) && !seen.has(name)) { seen.add(name); underTotal.set(name, underTotal.get(name) + us); }
      }
    }
  }
  const busy = total - idle;
  const pct = (us) => `${((100 * us) / busy).toFixed(1).padStart(5)} %`;
  console.log(`\n${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (percentages of busy time)`);
  console.log('\nby area (self):');
  for (const [k, v] of [...areaSelf].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(v)}  ${k}`);
  console.log(`\ntop ${top} functions (self):`);
  for (const [k, v] of [...fnSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v)}  ${k}`);
  console.log(`\ntop ${top} functions (inclusive: with them on the stack):`);
  for (const [k, v] of [...incl].filter(([k]) => !k.startsWith('(root)')).sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v)}  ${k}`);
  if (under.length) {
    console.log('\ntotal under (inclusive):');
    for (const [k, v] of underTotal) console.log(`  ${pct(v)}  ${k}`);
  }
}
