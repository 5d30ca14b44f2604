#!/usr/bin/env node
// node bench/hop.mjs [--n N] [--rounds R] [--wait MS] [--trace-gc] [--perf] [--prof DIR]
//   (after npm run build; no root, no lab; 127.0.0.1 ports 30000-50000 by pid)
//
// The relay-only hop on loopback, for working on it between `npm run bench -- --parts relay` runs: the
// bench's stub server (bench/stub-ftpd.mjs), the bench's daemon host with a firewall that does nothing
// (BENCH_FIREWALL=none, -R to the stub, the bench's node flags), and a client in this process that times
// PASV->227 and PORT->200 on one session straight to the stub, one through the daemon and one through
// bench/hop-floor.mjs (a Node.js relay that only copies chunks: what any Node hop costs), in rotating
// order. added = through it minus straight, p50 and p99 per mode, per round (R rounds of N each); CPU
// per negotiation from /proc. The bench's relay row runs 300 per mode on a fresh daemon: --n 300
// --rounds 1 is that (code not yet optimized by V8); larger N shows the warmed-up hop.
//   --wait MS     pause after printing the pids, to attach a tracer (perf record -t PID) first
//   --trace-gc    count the daemon's and the floor's scavenges
//   --perf        node --perf-basic-prof for both (perf record -p PID shows JavaScript names)
//   --prof DIR    the daemon (and the floor, floor.cpuprofile) write V8 CPU profiles there
//                 (bench/cpuprofile-top.mjs reads them)
//   HOP_IMPORT=FILE  preloaded into the daemon (node --import), e.g. an allocation sampler
//   HOP_DAEMON_FLAGS='--trace-deopt ...'  more node flags for the daemon
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const N = Number(opt('--n', 2000));
const ROUNDS = Number(opt('--rounds', 3));
const PROF = opt('--prof', null);
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const STUB_PORT = 30000 + (process.pid % 10000);
const PROXY_PORT = STUB_PORT + 10000 > 65000 ? STUB_PORT - 20000 : STUB_PORT + 10000;

function start(args, env = {}) {
  const p = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  p.output = '';
  p.stdout.on('data', (d) => (p.output += d));
  p.stderr.on('data', (d) => (p.output += d));
  return p;
}
const waitFor = (p, re, ms = 15000) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${re}: ${p.output}`)), ms);
    const check = () => {
      if (re.test(p.output)) {
        clearTimeout(t);
        resolve();
      }
    };
    p.stdout.on('data', check);
    p.stderr.on('data', check);
    check();
  });

class Control {
  constructor(sock) {
    this.sock = sock;
    this.buf = '';
    this.waiter = null;
    this.replies = [];
    sock.setNoDelay(true);
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const l = this.buf.slice(0, nl + 1);
        this.buf = this.buf.slice(nl + 1);
        if (/^\d{3} /.test(l)) this.replies.push(l);
      }
      if (this.replies.length && this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(this.replies.shift());
      }
    });
  }
  static open(port) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(new Control(s)));
      s.once('error', reject);
    });
  }
  reply() {
    if (this.replies.length) return Promise.resolve(this.replies.shift());
    return new Promise((r) => (this.waiter = r));
  }
  async expect(line, code) {
    if (line !== null) this.sock.write(`${line}\r\n`);
    const r = await this.reply();
    if (!r.startsWith(code)) throw new Error(`${line}: ${r}`);
  }
}

const pct = (xs, p) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

const FLOOR_PORT = PROXY_PORT + 1;
const nodeFlags = ['--max-semi-space-size=1', ...(argv.includes('--perf') ? ['--perf-basic-prof'] : [])];
const stub = start([here('./stub-ftpd.mjs'), '127.0.0.1', String(STUB_PORT)]);
const daemon = start(
  [
    ...(PROF ? ['--cpu-prof', `--cpu-prof-dir=${PROF}`, '--cpu-prof-interval=50'] : []),
    ...(argv.includes('--trace-gc') ? ['--trace-gc'] : []),
    ...(process.env.HOP_IMPORT ? ['--import', process.env.HOP_IMPORT] : []),
    ...(process.env.HOP_DAEMON_FLAGS ? process.env.HOP_DAEMON_FLAGS.split(' ') : []),
    ...nodeFlags,
    here('./daemon-host.mjs'),
    '-d',
    '-b',
    '127.0.0.1',
    '-p',
    String(PROXY_PORT),
    '-R',
    '127.0.0.1',
    '-P',
    String(STUB_PORT),
  ],
  { BENCH_FIREWALL: 'none' },
);
const floor = start([...(argv.includes('--trace-gc') ? ['--trace-gc'] : []), ...(PROF ? ['--cpu-prof', `--cpu-prof-dir=${PROF}`, '--cpu-prof-name=floor.cpuprofile'] : []), ...nodeFlags, here('./hop-floor.mjs'), String(FLOOR_PORT), String(STUB_PORT)]);
const NAMES = ['daemon', 'floor', 'direct'];
try {
  await waitFor(stub, /ready/);
  await waitFor(daemon, /listening on /);
  await waitFor(floor, /listening on /);
  process.stderr.write(`hop: daemon pid ${daemon.pid}, floor pid ${floor.pid}\n`);
  // --wait MS: time to attach a tracer to those pids before the first command
  await new Promise((r) => setTimeout(r, Number(opt('--wait', 0))));
  const sessions = [];
  for (const port of [PROXY_PORT, FLOOR_PORT, STUB_PORT]) {
    const c = await Control.open(port);
    await c.expect(null, '220');
    await c.expect('USER bench', '331');
    await c.expect('PASS bench', '230');
    sessions.push(c);
  }
  const local = '127,0,0,1';
  // CPU time of a process (user + system), ms, from /proc (Linux)
  const cpu = (p) => {
    const f = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  };
  const f3 = (x) => x.toFixed(3);
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of ['pasv', 'port']) {
      const samples = sessions.map(() => []);
      const cpu0 = [cpu(daemon), cpu(floor)];
      for (let i = 0; i < N; i++) {
        for (let k = 0; k < sessions.length; k++) {
          const j = (i + k) % sessions.length; // rotate who goes first
          const port = 10000 + 10000 * j + (i % 10000);
          const line = mode === 'pasv' ? 'PASV' : `PORT ${local},${port >> 8},${port & 255}`;
          const t0 = process.hrtime.bigint();
          sessions[j].sock.write(`${line}\r\n`);
          const reply = await sessions[j].reply();
          const dt = Number(process.hrtime.bigint() - t0) / 1e6;
          if (!reply.startsWith(mode === 'pasv' ? '227' : '200')) throw new Error(`${NAMES[j]} ${line}: ${reply}`);
          samples[j].push(dt);
        }
      }
      const cpuPer = [cpu(daemon) - cpu0[0], cpu(floor) - cpu0[1]].map((ms) => ((ms / N) * 1000).toFixed(0));
      const d = samples[2];
      const added = (s, p) => f3(pct(s, p) - pct(d, p));
      process.stdout.write(
        `round ${r + 1} ${mode}: added p50/p99 daemon ${added(samples[0], 0.5)} / ${added(samples[0], 0.99)}, floor ${added(samples[1], 0.5)} / ${added(samples[1], 0.99)}` +
          ` (direct ${f3(pct(d, 0.5))} / ${f3(pct(d, 0.99))}; n ${N}); CPU per negotiation daemon ${cpuPer[0]} µs, floor ${cpuPer[1]} µs\n`,
      );
    }
  }
  for (const c of sessions) c.sock.destroy();
} finally {
  daemon.stdin.end();
  floor.stdin.end();
  await new Promise((r) => daemon.once('exit', r));
  stub.kill();
  if (argv.includes('--trace-gc')) {
    const gcs = daemon.output.split('\n').filter((l) => /Scavenge|Mark-Compact|Mark-sweep/.test(l));
    process.stdout.write(`daemon GCs: ${gcs.length} (${gcs.filter((l) => /Scavenge/.test(l)).length} scavenges)\n${gcs.slice(-3).join('\n')}\n`);
    const fg = floor.output.split('\n').filter((l) => /Scavenge/.test(l));
    process.stdout.write(`floor scavenges: ${fg.length}\n`);
  }
  if (process.env.HOP_DAEMON_OUT) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(process.env.HOP_DAEMON_OUT, daemon.output);
  }
}
