// npm run build && node bench/iptables-negotiation.mjs [iptables-nft|iptables-legacy]: what one iptables negotiation costs with N live
// pinholes, in a scratch network namespace: the add (one iptables-restore, its -C checks included) and the
// iptables-save the reply path used to run beside it (the reply waited for both). Median of 15 each.
import { execFileSync, execSync } from 'node:child_process';
import { addScript, pinholeRules, parentRepairScript } from '../dist/firewall/iptables.js';
import { passivePinhole } from '../dist/firewall/backend.js';
const NS = `fbipt${process.pid}`;
const v = process.argv[2] ?? 'iptables-nft';
execSync(`ip netns add ${NS}`);
const run = (cmd, input) => execFileSync('ip', ['netns', 'exec', NS, ...cmd], { input, maxBuffer: 1 << 28 });
const ends = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
const o = { log: 0, timeout: 30 };
try {
  run([`${v}-restore`, '--noflush'], parentRepairScript('', false, 'aaaaaaaa'));
  const time = (f, n = 15) => { const ts = []; for (let i = 0; i < n; i++) { const t = process.hrtime.bigint(); f(i); ts.push(Number(process.hrtime.bigint() - t) / 1e6); } ts.sort((a, b) => a - b); return ts[Math.floor(n / 2)].toFixed(1); };
  let live = 0;
  for (const target of [0, 1000, 3000]) {
    const batch = [];
    for (; live < target; live++) batch.push(addScript({ instance: 'bbbbbbbb', session: live }, 'A', pinholeRules([passivePinhole(ends, 40000, 50000 + (live % 15000))], o, { instance: 'bbbbbbbb', session: live }, live, new Date()), false));
    for (let i = 0; i < batch.length; i += 200) run([`${v}-restore`, '--noflush'], batch.slice(i, i + 200).join(''));
    const add = time((i) => run([`${v}-restore`, '--noflush'], addScript({ instance: 'cccccccc', session: 1 }, i % 2 ? 'A' : 'B', pinholeRules([passivePinhole(ends, 40001, 61000)], o, { instance: 'cccccccc', session: 1 }, 1e6 + i, new Date()), false, true)));
    const save = time(() => run([`${v}-save`]));
    console.log(`${v} ${target} live pinholes: add restore (with -C checks) p50 ${add} ms; iptables-save p50 ${save} ms`);
  }
} finally {
  execSync(`ip netns del ${NS}`);
}
