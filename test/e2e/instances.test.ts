// Two daemons in one network namespace but each in its own PID namespace (host-network containers):
// both are pid 1, so a pid says nothing about whose firewall objects are whose. Each instance has a
// random id and holds the abstract socket @ftp-proxy/<id> (per network namespace); the one that starts
// must leave the other's live pinholes alone, and the one that stops must leave the table (nftables) or
// the parent chains (iptables) to the other.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, CLI, EXAMPLES, Lab, requireLab, ROOT } from './lab.js';

/** The proxy as pid 1 of a new PID namespace inside the lab's firewall namespace. */
class Pid1Proxy {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  private exit: Promise<number | null>;

  constructor(ns: string, args: string[], env: Record<string, string>) {
    this.child = spawn('ip', ['netns', 'exec', ns, 'unshare', '--pid', '--fork', process.execPath, CLI, '-d', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      this.lines.push(...parts);
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exit = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  get log(): string {
    return this.lines.join('\n');
  }

  async waitFor(re: RegExp, ms = 15_000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit) return hit;
      if (this.child.exitCode !== null || Date.now() > end) throw new Error(`proxy did not log ${re}:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The daemon's pid as this (the parent) namespace sees it: unshare's one child. */
  nodePid(): number {
    const kids = readFileSync(`/proc/${this.child.pid}/task/${this.child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    if (kids.length !== 1 || !kids[0]) throw new Error(`unshare ${this.child.pid} has children ${kids.join(',')}`);
    return kids[0];
  }

  /** unshare does not pass signals on: signal the daemon itself (pid 1 inside: it handles SIGTERM). */
  async stop(sig: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    process.kill(this.nodePid(), sig);
    return Promise.race([this.exit, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
  }
}

const SETUPS: { backend: Backend; ruleset: string; args: string[]; iptables?: string }[] = [
  { backend: 'nftables', ruleset: `${EXAMPLES}forward-redirect.nft`, args: [] },
  { backend: 'iptables', ruleset: `${ROOT}iptables-examples/forward-redirect.rules`, args: ['--backend', 'iptables'], iptables: 'iptables-nft' },
];

beforeAll(requireLab);

describe.each(SETUPS)('two pid-1 instances in one network namespace ($backend)', ({ backend, ruleset, args, iptables }) => {
  let lab: Lab;
  const procs: Pid1Proxy[] = [];
  const env: Record<string, string> = iptables ? { FTP_PROXY_IPTABLES: iptables } : {};
  const start = async (extra: string[]): Promise<Pid1Proxy> => {
    const p = new Pid1Proxy(lab.fw, ['-D', '6', ...args, ...extra], env);
    procs.push(p);
    await p.waitFor(/listening on /);
    return p;
  };

  beforeAll(async () => {
    lab = await Lab.up('forward');
    if (iptables) lab.iptables = iptables;
    await lab.loadRuleset(ruleset);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) await p.stop('SIGKILL').catch(() => undefined);
    await lab?.down();
  });

  it('both are pid 1; the second one\'s start leaves the first one\'s live pinhole, and its stop leaves the rest', async () => {
    const a = await start([]); // intercepted port 21 goes to 8021: a serves the sessions
    // A pinhole of a, waiting for its data connection (the client dials it 10 s after the 227).
    const waiting = lab.raw(['pasv-wait', lab.target, '10']);
    await a.waitFor(/passive: client to server port/);
    const before = await lab.pinholeObjects(backend);
    expect(before).toBeGreaterThan(0);

    const b = await start(['-p', '8022']);
    expect(b.log).not.toMatch(/stale|removed the chains/); // nothing of a's was judged dead
    // Both are pid 1 in their own PID namespace (NSpid: the pid here, then the pid inside).
    const pid1 = (p: Pid1Proxy) => readFileSync(`/proc/${p.nodePid()}/status`, 'utf8').match(/^NSpid:\s+\d+\s+(\d+)$/m)?.[1];
    expect(pid1(a)).toBe('1');
    expect(pid1(b)).toBe('1');
    const ida = /firewall: instance ([0-9a-f]{8})/.exec(await a.waitFor(/firewall: instance /))![1];
    const idb = /firewall: instance ([0-9a-f]{8})/.exec(await b.waitFor(/firewall: instance /))![1];
    expect(ida).not.toBe(idb);
    expect(await lab.pinholeObjects(backend)).toBe(before);

    // `status` names both, running
    const st = await execa('ip', ['netns', 'exec', lab.fw, process.execPath, CLI, 'status', '--backend', backend], { env: { ...process.env, ...env }, reject: false });
    expect(st.stdout).toMatch(new RegExp(`^instance ${ida} \\(pid \\d+\\): running`, 'm'));
    expect(st.stdout).toMatch(new RegExp(`^instance ${idb} \\(pid \\d+\\): running`, 'm'));

    expect(await b.stop()).toBe(0);
    expect(await lab.proxyObjects(backend)).toBe(true); // the table / parent chains stay for a
    expect(await lab.pinholeObjects(backend)).toBe(before);

    const r = await waiting;
    expect(r.after, JSON.stringify(r)).toBe('connected'); // a's pinhole still admitted its connection
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
  }, 120_000);

  it('an idle instance keeps the table when the other stops; the last one to stop removes it', async () => {
    const a = procs[0]!;
    const b = await start(['-p', '8022']); // idle: no session, no pinhole
    expect(await a.stop()).toBe(0);
    expect(await lab.proxyObjects(backend)).toBe(true);
    expect(await b.stop()).toBe(0);
    expect(await lab.proxyObjects(backend)).toBe(false);
  }, 120_000);
});
