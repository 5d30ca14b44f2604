#!/usr/bin/env node
// node bench/cpuprofile-top.mjs FILE.cpuprofile [N]: where a V8 CPU profile (node --cpu-prof) spent its
// samples, for the README's "measured cause" of a missed target: self time by function (top N), and
// self time by where the code lives (our dist/, node_modules, Node's own JavaScript, native/GC/idle).
import { readFileSync } from 'node:fs';

const [file, nArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: cpuprofile-top.mjs FILE.cpuprofile [N]\n');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
// timeDeltas[i] is the time before sample i; each sample is one node's self time
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const place = (url) => {
  if (!url) return 'native, GC, idle';
  if (url.includes('/node_modules/')) return `node_modules/${url.split('/node_modules/')[1].split('/')[0]}`;
  if (url.includes('/dist/')) return 'ftp-proxy (dist/)';
  if (url.startsWith('node:')) return "Node's own JavaScript";
  return url;
};
const fn = new Map();
const where = new Map();
for (const [id, us] of self) {
  const cf = byId.get(id).callFrame;
  const name = cf.functionName || '(anonymous)';
  const key = `${name} ${cf.url ? `${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}` : ''}`.trim();
  fn.set(key, (fn.get(key) ?? 0) + us);
  const w = place(cf.url);
  where.set(w, (where.get(w) ?? 0) + us);
}
const pc = (us) => `${((us / total) * 100).toFixed(1)}%`.padStart(6);
const ms = (us) => `${(us / 1000).toFixed(0)} ms`.padStart(9);
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n\nby place:\n`);
for (const [k, us] of [...where].sort((a, b) => b[1] - a[1])) process.stdout.write(`${pc(us)} ${ms(us)}  ${k}\n`);
process.stdout.write(`\nby function (self time), top ${nArg ?? 25}:\n`);
for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, Number(nArg ?? 25))) process.stdout.write(`${pc(us)} ${ms(us)}  ${k}\n`);
