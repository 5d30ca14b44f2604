#!/usr/bin/env node
// The benchmark's FTP client, run inside the lab's client namespace. Prints JSON lines.
//
//   client.mjs latency pasv|port N SECONDS WAIT HOST...
//                                            one logged-in session per HOST; N rounds (or fewer, when
//                                            SECONDS pass), each one PASV (or PORT) on every session, in
//                                            rotating order; microseconds from sending the command to
//                                            its 227/200, per host. A reply not there after WAIT seconds
//                                            (2 for all but the first host) counts as lost, and that
//                                            session is replaced (a late reply would answer the next one)
//   client.mjs latency-tls pasv N SECONDS WAIT CAFILE HOST[:PORT]...
//                                            the same over FTPS: AUTH TLS (the server's certificate checked
//                                            against CAFILE, by address), login lab/lab, PBSZ 0, PROT P
//   client.mjs idle HOST N                   N sessions, logged in, held idle; reads commands on stdin:
//                                            "more N" opens N more, "close" closes all and exits
//   client.mjs cycles HOST CONC SECONDS      CONC clients, each looping: connect, banner, USER, PASS, PASV,
//                                            data connection, RETR of 1 KiB, QUIT; cycles per second
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import tls from 'node:tls';

const [cmd, ...args] = process.argv.slice(2);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const now = () => Number(process.hrtime.bigint() / 1000n); // microseconds

class Control {
  constructor(sock) {
    this.sock = sock;
    this.buf = '';
    this.replies = [];
    this.waiter = null;
    this.closed = false;
    sock.setNoDelay(true);
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const l = this.buf.slice(0, nl + 1);
        this.buf = this.buf.slice(nl + 1);
        // the last line of a reply: "ddd " (continuation lines are "ddd-" or anything else)
        if (/^\d{3} /.test(l)) this.replies.push(l);
      }
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }
  static open(host, port = 21, ms = 10000) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error('connect timeout'));
      }, ms);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(new Control(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }
  wake() {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
  async reply(ms = 10000) {
    const end = Date.now() + ms;
    // a chunk may end mid-line: wait until a whole reply is there (or the end)
    while (!this.replies.length) {
      if (this.closed || Date.now() >= end) return null;
      await new Promise((r) => {
        const t = setTimeout(r, end - Date.now());
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    return this.replies.shift();
  }
  async cmd(line) {
    this.sock.write(`${line}\r\n`);
    return this.reply();
  }
  async expect(line, code) {
    const r = line === null ? await this.reply() : await this.cmd(line);
    if (!r?.startsWith(code)) throw new Error(`${line ?? 'banner'}: ${r?.trim() ?? 'no reply'}`);
    return r;
  }
  async login() {
    await this.expect(null, '220');
    await this.expect('USER bench', '331');
    await this.expect('PASS bench', '230');
  }
  /** FTPS (explicit): banner, AUTH TLS, the handshake on this socket, then login lab/lab and PROT P. */
  static async openTls(spec, ca) {
    const [host, port = '21'] = spec.split(':');
    const plain = await Control.open(host, Number(port));
    await plain.expect(null, '220');
    await plain.expect('AUTH TLS', '234');
    // The TLS socket takes the connection over; the plain reader lets go of it.
    plain.sock.removeAllListeners('data');
    plain.sock.removeAllListeners('close');
    const s = await new Promise((resolve, reject) => {
      const t = tls.connect({ socket: plain.sock, host, ca }, () => resolve(t));
      t.once('error', reject);
    });
    const c = new Control(s);
    await c.expect('USER lab', '331');
    await c.expect('PASS lab', '230');
    await c.expect('PBSZ 0', '200');
    await c.expect('PROT P', '200');
    return c;
  }
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

async function latency(mode, n, seconds, wait, hosts, ca = null) {
  const open = async (h) => {
    if (ca) return Control.openTls(h, ca);
    const c = await Control.open(h);
    await c.login();
    return c;
  };
  const sessions = [];
  for (const h of hosts) sessions.push(await open(h));
  // SECONDS counts from here: logins (TLS handshakes) on a loaded machine must not eat the rounds
  const deadline = Date.now() + seconds * 1000;
  const samples = hosts.map(() => []);
  const lost = hosts.map(() => 0);
  const errors = [];
  const local = sessions[0].sock.localAddress.replace(/^::ffff:/, '').split('.').join(',');
  for (let i = 0; i < n && Date.now() < deadline; i++) {
    for (let k = 0; k < sessions.length; k++) {
      const j = (i + k) % sessions.length; // rotate who goes first
      const c = sessions[j];
      // the sessions' ports never coincide (the kernel helper is touchy about a client's sessions)
      const port = 10000 + 20000 * (j % 2) + (i % 20000);
      const line = mode === 'pasv' ? 'PASV' : `PORT ${local},${port >> 8},${port & 255}`;
      const t0 = now();
      c.sock.write(`${line}\r\n`);
      const r = await c.reply(j === 0 ? wait * 1000 : 2000);
      const dt = now() - t0;
      if (!r?.startsWith(mode === 'pasv' ? '227' : '200')) {
        lost[j]++;
        if (errors.length < 5) errors.push(`${hosts[j]}: ${r?.trim() ?? `no reply in ${dt} µs`}`);
        if (c.closed && !r) throw new Error(`session to ${hosts[j]} closed: ${errors.join('; ')}`);
        // A reply that comes late would answer the next command: start a new session instead.
        c.sock.destroy();
        sessions[j] = await open(hosts[j]);
        continue;
      }
      samples[j].push(dt);
    }
  }
  for (const c of sessions) c.sock.destroy();
  out({ mode, hosts, samples, lost, errors });
}

async function openMany(host, n, into) {
  let failed = 0;
  const errors = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      try {
        const c = await Control.open(host);
        await c.login();
        into.push(c);
      } catch (e) {
        failed++;
        if (errors.length < 3) errors.push(String(e.message ?? e));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, 200) }, worker));
  return { failed, errors };
}

async function idle(host, n) {
  const held = [];
  const t0 = Date.now();
  const r = await openMany(host, n, held);
  out({ ready: held.length, ...r, seconds: (Date.now() - t0) / 1000 });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [what, arg] = line.trim().split(/\s+/);
    if (what === 'more') {
      const t1 = Date.now();
      const r2 = await openMany(host, Number(arg), held);
      out({ ready: held.length, ...r2, seconds: (Date.now() - t1) / 1000, stillOpen: held.filter((c) => !c.closed).length });
    } else if (what === 'close') {
      for (const c of held) c.sock.destroy();
      out({ closed: held.length });
      process.exit(0);
    }
  }
  process.exit(0);
}

function dataConnect(hostPort) {
  return new Promise((resolve, reject) => {
    const s = net.connect(hostPort);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function cycles(host, conc, seconds) {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  const errors = [];
  const times = [];
  const one = async () => {
    const t0 = now();
    const c = await Control.open(host);
    try {
      await c.login();
      const r = await c.expect('PASV', '227');
      const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(r);
      const d = await dataConnect({ host: m.slice(1, 5).join('.'), port: Number(m[5]) * 256 + Number(m[6]) });
      let got = 0;
      const eof = new Promise((resolve, reject) => {
        d.on('data', (b) => {
          got += b.length;
        });
        d.on('end', resolve);
        d.on('error', reject);
      });
      c.sock.write('RETR 1024\r\n');
      await eof;
      let fin = await c.reply();
      if (fin?.startsWith('150')) fin = await c.reply();
      if (!fin?.startsWith('226') || got !== 1024) throw new Error(`RETR: ${fin?.trim()} (${got} bytes)`);
      await c.expect('QUIT', '221');
      times.push(now() - t0);
    } finally {
      c.sock.destroy();
    }
  };
  const worker = async () => {
    while (Date.now() < end) {
      try {
        await one();
        done++;
      } catch (e) {
        failed++;
        if (errors.length < 5) errors.push(String(e.message ?? e));
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: conc }, worker));
  const secs = (Date.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  const cpu = process.cpuUsage();
  out({ cycles: done, failed, errors, seconds: secs, rate: done / secs, p50: pct(times, 0.5) ?? null, p99: pct(times, 0.99) ?? null, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
}

try {
  if (cmd === 'latency') await latency(args[0], Number(args[1]), Number(args[2]), Number(args[3]), args.slice(4));
  else if (cmd === 'latency-tls') await latency(args[0], Number(args[1]), Number(args[2]), Number(args[3]), args.slice(5), readFileSync(args[4], 'utf8'));
  else if (cmd === 'idle') await idle(args[0], Number(args[1]));
  else if (cmd === 'cycles') await cycles(args[0], Number(args[1]), Number(args[2]));
  else throw new Error(`unknown command ${cmd}`);
} catch (e) {
  out({ error: String(e.message ?? e) });
  process.exit(1);
}
