// Running it as a service: the cron watchdog (kill -9, restart, sweep, syslog, lock), the daemon as the
// shipped systemd unit runs it (a dedicated user with only CAP_NET_ADMIN, priorities for the journal),
// and --user (start as root, run as the user).
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, CLI, EXAMPLES, Lab, requireLab, ROOT } from './lab.js';

const WATCHDOG = `${ROOT}scripts/ftp-proxy-watchdog`;
const UNIT = `${ROOT}scripts/ftp-proxy.service`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const status = (pid: number) => readFileSync(`/proc/${pid}/status`, 'utf8');

beforeAll(requireLab);

describe('the cron watchdog', () => {
  let lab: Lab;
  const dir = mkdtempSync(join(tmpdir(), 'ftpp-wd-'));
  const pidfile = join(dir, 'ftp-proxy.pid');
  const sock = join(dir, 'log.sock');
  const syslog = join(dir, 'syslog.txt');
  let rx: ChildProcess;
  const env = { FTP_PROXY_SYSLOG: sock };
  const pidNow = () => Number(readFileSync(pidfile, 'utf8').trim());
  const watchdog = () => execa('ip', ['netns', 'exec', lab.fw, WATCHDOG, '--pidfile', pidfile], { env, reject: false, timeout: 30_000 });

  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
    rx = spawn('python3', [
      '-c',
      `import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nf=open(sys.argv[2],'a',buffering=1)\nwhile True:\n  f.write(s.recv(4096).decode()+'\\n')`,
      sock,
      syslog,
    ]);
    await sleep(300);
    const started = await execa('ip', ['netns', 'exec', lab.fw, process.execPath, CLI, '-D', '6', '--pidfile', pidfile], { env, reject: false, timeout: 15_000 });
    expect(started.exitCode, started.stderr).toBe(0);
  });
  afterAll(async () => {
    try {
      const pid = pidNow();
      if (pid) process.kill(pid, 'SIGTERM');
    } catch {
      // not running
    }
    rx?.kill();
    await lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('does nothing and exits 0 when the daemon runs', async () => {
    const pid = pidNow();
    const r = await watchdog();
    expect(r.exitCode).toBe(0);
    expect(pidNow()).toBe(pid);
  });

  it('kill -9: the watchdog starts it again with its flags, the stale pinholes go, a new transfer works, syslog says so', async () => {
    const holder = lab.rawSpawn(['sessions', lab.target, '1']);
    for (let i = 0; i < 50 && (await lab.pinholeElements()) === 0; i++) await sleep(100);
    expect(await lab.pinholeElements()).toBeGreaterThan(0);
    const old = pidNow();
    process.kill(old, 'SIGKILL');
    holder.kill('SIGKILL');
    const r = await watchdog();
    expect(r.exitCode, r.stderr).toBe(0);
    const pid = pidNow();
    expect(pid).not.toBe(old);
    expect(alive(pid)).toBe(true);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['-D', '6', '--pidfile', pidfile]));
    expect(await lab.pinholeElements()).toBe(0); // the dead instance's elements, removed at start
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    const log = readFileSync(syslog, 'utf8');
    expect(log).toMatch(new RegExp(`^<29>.* ftp-proxy-watchdog(\\[\\d+\\])?: ftp-proxy \\(pid ${old}\\) was gone; started it again as pid ${pid}$`, 'm'));
    expect(log).toMatch(new RegExp(`ftp-proxy\\[${pid}\\]: nftables: removed \\d+ stale element\\(s\\) left by 1 dead instance\\(s\\)`));
  });

  it('two runs at the same time start one daemon', async () => {
    const old = pidNow();
    process.kill(old, 'SIGKILL');
    const [a, b] = await Promise.all([watchdog(), watchdog()]);
    expect(a.exitCode).toBe(0);
    expect(b.exitCode).toBe(0);
    await sleep(500);
    const daemons = (await execa('pgrep', ['-f', `pidfile ${pidfile}$`], { reject: false })).stdout.split('\n').filter(Boolean);
    expect(daemons).toHaveLength(1);
    expect(Number(daemons[0])).toBe(pidNow());
  });

  it('leaves a daemon that was stopped on purpose stopped', async () => {
    const pid = pidNow();
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
    const r = await watchdog();
    expect(r.exitCode).toBe(0);
    expect((await execa('pgrep', ['-f', `pidfile ${pidfile}$`], { reject: false })).stdout).toBe('');
  });
});

describe('least privilege', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
  });
  afterAll(async () => {
    await lab?.down();
  });

  /** The unit's User=, AmbientCapabilities=, CapabilityBoundingSet=, Restart= and ExecStart=. */
  function unit(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const line of readFileSync(UNIT, 'utf8').split('\n')) {
      const m = /^(\w+)=(.*)$/.exec(line);
      if (m) out[m[1]!] = m[2]!;
    }
    return out;
  }

  it('the systemd unit runs it as a dedicated user with only CAP_NET_ADMIN, restarted on failure', () => {
    const u = unit();
    expect(u.User).toBe('ftp-proxy');
    expect(u.AmbientCapabilities).toBe('CAP_NET_ADMIN');
    expect(u.CapabilityBoundingSet).toBe('CAP_NET_ADMIN');
    expect(u.Restart).toBe('on-failure');
    expect(u.ExecStart).toMatch(/ftp-proxy -d \$FTP_PROXY_FLAGS$/);
    expect(u.NoNewPrivileges).toBe('yes');
    expect(u.ProtectSystem).toBe('strict');
  });

  it.each(['nftables', 'iptables'])(
    'as the unit runs it (its user, here nobody; its capabilities): the %s backend works and the journal gets priorities',
    async (backend) => {
      const u = unit();
      const caps = u.AmbientCapabilities!.split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
      if (backend === 'iptables') await lab.loadRuleset(`${ROOT}iptables-examples/forward-redirect.rules`);
      const child = lab.spawn('fw', [
        'env',
        'JOURNAL_STREAM=8:1234',
        'FTP_PROXY_IPTABLES=iptables-nft',
        'setpriv',
        '--reuid=nobody',
        '--regid=nogroup',
        '--init-groups',
        `--inh-caps=-all,${caps}`,
        `--ambient-caps=-all,${caps}`,
        `--bounding-set=-all,${caps}`,
        '--no-new-privs',
        '--',
        process.execPath,
        CLI,
        '-d',
        '-D6',
        '--backend',
        backend,
      ]);
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      try {
        // Two Node processes start one after the other (privilege separation): give a loaded machine time.
        for (let i = 0; i < 200 && !/listening on/.test(err); i++) await sleep(100);
        expect(err).toMatch(/^<5>listening on 127\.0\.0\.1 port 8021$/m);
        const s = status(child.pid!);
        expect(s).toMatch(/^Uid:\s+65534\s/m);
        expect(s).toMatch(/^CapEff:\s+0000000000001000$/m);
        // It splits itself: the network process (its child) holds no capability and can gain none.
        const [net] = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
        expect(status(net!)).toMatch(/^CapEff:\s+0000000000000000$/m);
        expect(status(net!)).toMatch(/^CapPrm:\s+0000000000000000$/m);
        expect(status(net!)).toMatch(/^NoNewPrivs:\s+1$/m);
        expect((await lab.get('curl', 'pasv')).ok).toBe(true);
        expect((await lab.get('lftp', 'port')).ok).toBe(true);
        expect(err).toMatch(/^<6>#\d+ passive: client to server port/m);
        // as this user, with these capabilities, the kept iptables-restore (under stdbuf) answers
        if (backend === 'iptables') expect(err).not.toMatch(/a process per change instead/);
        child.kill('SIGTERM');
        for (let i = 0; i < 50 && child.exitCode === null; i++) await sleep(100);
        expect(child.exitCode).toBe(0);
        expect(await lab.proxyObjects(backend as 'nftables' | 'iptables')).toBe(false);
      } finally {
        child.kill('SIGKILL');
        if (backend === 'iptables') {
          // The iptables tables go too (the nftables example replaces only its own table).
          await lab.exec('fw', ['nft', 'flush', 'ruleset']);
          await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
        }
      }
    },
  );

  it('--user: started as root, the daemon runs as that user with only CAP_NET_ADMIN (and CAP_SETPCAP, for its network process)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftpp-user-'));
    chmodSync(dir, 0o711); // the user must reach its pidfile
    const pidfile = join(dir, 'ftp-proxy.pid');
    let pid = 0;
    try {
      const r = await execa('ip', ['netns', 'exec', lab.fw, process.execPath, CLI, '-D', '6', '--user', 'nobody', '--pidfile', pidfile], {
        reject: false,
        timeout: 15_000,
      });
      expect(r.exitCode, r.stderr).toBe(0);
      pid = Number(readFileSync(pidfile, 'utf8').trim());
      const s = status(pid);
      expect(s).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
      expect(s).toMatch(/^CapEff:\s+0000000000001100$/m);
      expect(s).toMatch(/^CapBnd:\s+0000000000001100$/m);
      expect((await lab.get('curl', 'epsv')).ok).toBe(true);
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
      expect(alive(pid)).toBe(false);
      expect(await lab.tableExists()).toBe(false);
    } finally {
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--user refuses clearly what it cannot do', async () => {
    const unknown = await execa(process.execPath, [CLI, '-d', '--user', 'no-such-user-here'], { reject: false });
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toMatch(/^ftp-proxy: unknown user no-such-user-here$/m);
    const pf = await execa(process.execPath, [CLI, '-d', '--user', 'nobody', '--backend', 'pf'], { reject: false });
    expect(pf.exitCode).toBe(1);
    expect(pf.stderr).toMatch(/pf needs root/);
  });
});
