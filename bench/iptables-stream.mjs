#!/usr/bin/env node
// npm run build && node bench/iptables-stream.mjs [N [LIVE,LIVE...]]: what one iptables negotiation's add would cost if the
// daemon kept one `iptables-restore --noflush` running and fed it a block per negotiation (issue 13 item 3
// asks to choose by measurement), against a process per negotiation as now. In a scratch network
// namespace, with the daemon's own add script (one passive pinhole: nat and filter, the -C checks), 0 and
// 1,000 live pinholes (or the counts given). The time is until the kernel has the rules: `nft monitor` prints each committed
// rule (iptables-nft keeps its rules in nf_tables), so only the nft variant is timed. Whether a kept
// iptables-restore commits at each COMMIT while its input stays open is checked for both variants
// (iptables-save after each block). As root.
import { execFileSync, spawn } from 'node:child_process';
import { passivePinhole } from '../dist/firewall/backend.js';
import { addScript, parentRepairScript, pinholeRules } from '../dist/firewall/iptables.js';

const N = Number(process.argv[2] ?? 40);
const LEVELS = (process.argv[3] ?? '0,1000').split(',').map(Number);
const NS = `fbips${process.pid}`;
const inNs = (cmd) => ['netns', 'exec', NS, ...cmd];
const run = (cmd, input) => execFileSync('ip', inNs(cmd), { input, maxBuffer: 1 << 28, encoding: 'utf8' });
const ends = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
const o = { log: 0, timeout: 30 };
const owner = (session) => ({ instance: 'cccccccc', session });
const script = (session, set, seq) => addScript(owner(session), set, pinholeRules([passivePinhole(ends, 40001, 50000 + (seq % 15000))], o, owner(session), seq, new Date()), false, true);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const line = (label, xs) => `${label}: p50 ${pct(xs, 0.5).toFixed(2)} ms, p99 ${pct(xs, 0.99).toFixed(2)} ms (n ${xs.length})`;

execFileSync('ip', ['netns', 'add', NS]);
const procs = [];
// A timeout or Ctrl-C: the kept processes and the scratch namespace go too.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const p of procs) if (p.exitCode === null) p.kill();
    execFileSync('ip', ['netns', 'del', NS]);
    process.exit(130);
  });
}
try {
  // Does a kept iptables-restore commit at each COMMIT (input still open)? Both variants.
  for (const v of ['iptables-nft', 'iptables-legacy']) {
    run([`${v}-restore`, '--noflush'], parentRepairScript('', false, 'aaaaaaaa'));
    const r = spawn('ip', inNs([`${v}-restore`, '--noflush', '--wait']), { stdio: ['pipe', 'ignore', 'pipe'] });
    procs.push(r);
    const seen = [];
    for (let i = 0; i < 2; i++) {
      r.stdin.write(script(900 + i, 'A', 900 + i));
      await new Promise((res) => setTimeout(res, 300));
      seen.push(run([`${v}-save`]).includes(`FTPP-cccccccc-${900 + i}-`));
    }
    console.log(`${v}: a kept iptables-restore committed block 1: ${seen[0]}, block 2: ${seen[1]}, still running: ${r.exitCode === null}`);
    r.stdin.end();
    run(['bash', '-c', `${v}-save >/dev/null; ${v} -t nat -F; ${v} -t nat -X; ${v} -F; ${v} -X`]);
  }

  // Timing, iptables-nft: until nft monitor reports the block's last rule.
  run(['iptables-nft-restore', '--noflush'], parentRepairScript('', false, 'aaaaaaaa'));
  const mon = spawn('ip', inNs(['nft', 'monitor', 'rules']), { stdio: ['ignore', 'pipe', 'ignore'] });
  procs.push(mon);
  let buf = '';
  let waiter = null;
  mon.stdout.setEncoding('utf8');
  mon.stdout.on('data', (d) => {
    buf += d;
    waiter?.();
  });
  await new Promise((res) => setTimeout(res, 300));
  // wait until the monitor's output shows the given text (the block's last rule)
  const until = (tag) =>
    new Promise((res) => {
      const check = () => {
        const i = buf.indexOf(tag);
        if (i >= 0) {
          buf = buf.slice(i + tag.length);
          waiter = null;
          res();
        }
      };
      waiter = check;
      check();
    });
  const kept = spawn('ip', inNs(['iptables-nft-restore', '--noflush', '--wait']), { stdio: ['pipe', 'ignore', 'inherit'] });
  procs.push(kept);
  let seq = 1000;
  let have = 0;
  for (const live of LEVELS) {
    if (live > have) {
      const batch = [];
      for (let i = have; i < live; i++) batch.push(addScript(owner(i), 'A', pinholeRules([passivePinhole(ends, 40000, 50000 + (i % 15000))], o, owner(i), i, new Date()), false));
      for (let i = 0; i < batch.length; i += 500) run(['iptables-nft-restore', '--noflush'], batch.slice(i, i + 500).join(''));
      have = live;
      await new Promise((res) => setTimeout(res, 500));
      buf = '';
    }
    const fresh = [];
    const streamed = [];
    for (let i = 0; i < N; i++) {
      // alternating: a new process per block (as now), then a block into the kept process
      for (const how of ['fresh', 'streamed']) {
        seq++;
        const s = script(5000 + seq, 'A', seq);
        const tag = `jump FTPP-cccccccc-${5000 + seq}-FA`; // the last rule of the block (filter, after nat)
        const t0 = process.hrtime.bigint();
        const seen = until(tag);
        if (how === 'fresh') {
          const p = spawn('ip', inNs(['iptables-nft-restore', '--noflush', '--wait']), { stdio: ['pipe', 'ignore', 'inherit'] });
          p.stdin.end(s);
          await Promise.all([seen, new Promise((res) => p.on('exit', res))]);
          fresh.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } else {
          kept.stdin.write(s);
          await seen;
          streamed.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
      }
    }
    console.log(line(`iptables-nft, ${live} live pinholes, a process per negotiation (as now)`, fresh));
    console.log(line(`iptables-nft, ${live} live pinholes, a block into one kept iptables-restore`, streamed));
  }
} finally {
  for (const p of procs) if (p.exitCode === null) p.kill();
  execFileSync('ip', ['netns', 'del', NS]);
}
