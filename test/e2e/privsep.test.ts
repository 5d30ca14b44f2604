// Privilege separation (Linux): started as root with --user, the daemon is two processes. The one in the
// pidfile keeps CAP_NET_ADMIN (and CAP_SETPCAP) and the firewall; its child, the network process, reads
// every byte from clients and servers with no capability in any set, no_new_privs, and not root - and
// transfers work through nftables all the same. When the network process dies, the privileged one
// removes this instance's pinholes and exits, so that the watchdog or systemd starts it again.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, CLI, EXAMPLES, Lab, ProxyProcess, requireLab, ROOT } from './lab.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const status = (pid: number) => readFileSync(`/proc/${pid}/status`, 'utf8');
const field = (pid: number, name: string): string => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status(pid))?.[1] ?? '';
/** The children of a process (Linux keeps them per thread; the main thread's is enough for Node). */
const children = (pid: number): number[] =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);

beforeAll(requireLab);

describe('privilege separation', () => {
  let lab: Lab;
  const dir = mkdtempSync(join(tmpdir(), 'ftpp-privsep-'));
  chmodSync(dir, 0o755);
  const pidfile = join(dir, 'ftp-proxy.pid');
  let parent = 0;
  let child = 0;
  const sock = join(dir, 'log.sock');
  const syslog = join(dir, 'syslog.txt');
  const logged = (): string => (existsSync(syslog) ? readFileSync(syslog, 'utf8') : '');
  let rx: ChildProcess | undefined;

  beforeAll(async () => {
    rx = spawn('python3', [
      '-c',
      `import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nf=open(sys.argv[2],'a',buffering=1)\nwhile True:\n  f.write(s.recv(4096).decode()+'\\n')`,
      sock,
      syslog,
    ]);
    lab = await Lab.up('forward');
    for (let i = 0; i < 50 && !existsSync(sock); i++) await sleep(100);
    chmodSync(sock, 0o666); // the daemon runs as nobody
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
  });
  afterAll(async () => {
    for (const pid of [child, parent]) if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    rx?.kill();
    await lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  /** lab.proxy, with more time: two Node processes start one after the other (a loaded CI machine). */
  async function started(args: string[], env: Record<string, string> = {}): Promise<ProxyProcess> {
    const p = new ProxyProcess(lab.fw, args, env);
    try {
      await p.waitFor(/listening on /, 30_000);
    } catch (e) {
      await p.stop();
      throw e;
    }
    return p;
  }

  it('--user: the network process has no capability at all and is not root; transfers work through nftables', async () => {
    const r = await execa('ip', ['netns', 'exec', lab.fw, process.execPath, CLI, '-D', '6', '--user', 'nobody', '--pidfile', pidfile], {
      env: { FTP_PROXY_SYSLOG: sock },
      reject: false,
      timeout: 15_000,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    parent = Number(readFileSync(pidfile, 'utf8').trim());
    child = children(parent)[0] ?? 0;
    expect(child).toBeGreaterThan(0);
    // The privileged process: the user, CAP_NET_ADMIN and CAP_SETPCAP (bits 12 and 8), nothing else.
    expect(field(parent, 'Uid')).toMatch(/^65534\s+65534\s+65534\s+65534$/);
    expect(field(parent, 'CapEff')).toBe('0000000000001100');
    expect(field(parent, 'CapBnd')).toBe('0000000000001100');
    // The network process: not root, no capability in any set, and it can never gain one.
    expect(field(child, 'Uid')).toMatch(/^65534\s+65534\s+65534\s+65534$/);
    expect(field(child, 'Gid')).toMatch(/^65534\s/);
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(field(child, set), set).toBe('0000000000000000');
    expect(field(child, 'NoNewPrivs')).toBe('1');
    expect(readFileSync(`/proc/${child}/cmdline`, 'utf8')).toMatch(/privsep\/child\.js/);
    // The pidfile root opened for the privileged process does not reach the network process.
    const fds = readdirSync(`/proc/${child}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${child}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    expect(fds).not.toContain(pidfile);
    // The listener is the network process's alone: the privileged one closed its copy.
    const listeners = async (pid: number) => (await lab.exec('fw', ['ss', '-Htlnp', 'sport = :8021'])).stdout.includes(`pid=${pid},`);
    expect(await listeners(child)).toBe(true);
    expect(await listeners(parent)).toBe(false);

    for (const [client, mode] of [
      ['curl', 'pasv'],
      ['lftp', 'port'],
      ['curl', 'epsv'],
    ] as const) {
      const got = await lab.get(client, mode);
      expect(got.ok, `${client} ${mode}: ${got.output}`).toBe(true);
    }
  });

  it('both log to syslog under their own pids; SIGUSR2 and SIGUSR1 to the pidfile\'s process reach the network process', async () => {
    process.kill(parent, 'SIGUSR2');
    process.kill(parent, 'SIGUSR1');
    for (let i = 0; i < 30 && !/no policy file/.test(logged()); i++) await sleep(100);
    const log = logged();
    expect(log).toMatch(new RegExp(`ftp-proxy\\[${parent}\\]: network process ${child} runs with no capability$`, 'm'));
    expect(log).toMatch(new RegExp(`ftp-proxy\\[${child}\\]: listening on 127\\.0\\.0\\.1 port 8021$`, 'm'));
    expect(log).toMatch(new RegExp(`ftp-proxy\\[${child}\\]: #1 FTP session 1/100 started`, 'm'));
    expect(log).toMatch(new RegExp(`^<29>.* ftp-proxy\\[${child}\\]: status: \\d+ session\\(s\\)`, 'm'));
    expect(log).toMatch(new RegExp(`ftp-proxy\\[${child}\\]: no policy file \\(-f\\) to reload$`, 'm'));
    expect(alive(parent) && alive(child)).toBe(true);
  });

  it('the network process dies (kill -9): the privileged one removes the pinholes and exits 1; the pidfile stays for the watchdog', async () => {
    const holder = lab.rawSpawn(['sessions', lab.target, '1']);
    try {
      for (let i = 0; i < 50 && (await lab.pinholeElements()) === 0; i++) await sleep(100);
      expect(await lab.pinholeElements()).toBeGreaterThan(0);
      process.kill(child, 'SIGKILL');
      for (let i = 0; i < 100 && alive(parent); i++) await sleep(100);
      expect(alive(parent)).toBe(false);
      expect(await lab.tableExists()).toBe(false);
      expect(readFileSync(pidfile, 'utf8').trim()).toBe(String(parent)); // not "stopped on purpose"
      expect(logged()).toMatch(
        new RegExp(`^<26>.* ftp-proxy\\[${parent}\\]: the network process \\(pid ${child}\\) exited \\(signal SIGKILL\\): removing this instance's pinholes and exiting$`, 'm'),
      );
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('-d with --user: SIGUSR2, SIGUSR1 reach the network process; SIGTERM stops both cleanly (sessions end first, then the table goes)', async () => {
    const p = await started(['--user', 'nobody', '-D', '6']);
    try {
      await p.waitFor(/network process \d+ runs with no capability/);
      expect((await lab.get('curl', 'pasv')).ok).toBe(true);
      // The root process in front passes SIGUSR2 (status) and SIGUSR1 (reload) on, as SIGTERM.
      p.child.kill('SIGUSR2');
      expect(await p.waitFor(/^status: \d+ session\(s\)/m)).toBeTruthy();
      p.child.kill('SIGUSR1');
      await p.waitFor(/no policy file \(-f\) to reload/);
      expect(await p.signal('SIGTERM')).toBe(0);
      expect(await lab.tableExists()).toBe(false);
    } finally {
      await p.stop();
    }
  });

  it('data_mode active (the two local pinholes of a join) and passive pass the privileged process\'s checks', async () => {
    const policy = join(dir, 'active.policy');
    writeFileSync(policy, 'data_mode active\n', { mode: 0o644 });
    const p = await started(['--user', 'nobody', '-D', '6', '-f', policy]);
    try {
      for (const mode of ['pasv', 'epsv'] as const) {
        const got = await lab.get('curl', mode);
        expect(got.ok, `${mode}: ${got.output}\n${p.log}`).toBe(true);
      }
      expect(p.log).not.toMatch(/refused a request/);
    } finally {
      await p.stop();
    }
    writeFileSync(policy, 'data_mode passive\n', { mode: 0o644 });
    const q = await started(['--user', 'nobody', '-D', '6', '-f', policy]);
    try {
      const got = await lab.get('lftp', 'port');
      expect(got.ok, `${got.output}\n${q.log}`).toBe(true);
    } finally {
      await q.stop();
    }
  });

  it('started as root with no user ftp-proxy to drop to: it says so, and runs as before (one process)', async () => {
    const p = await started(['-D', '6']);
    try {
      expect(p.log).toMatch(/^running as root: no user ftp-proxy to drop to \(create it: useradd --system/m);
      expect(p.log).not.toMatch(/network process/);
      expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    } finally {
      await p.stop();
    }
  });

  it('a start-up failure of the network process (here: the port is taken) reaches the terminal, status 1, nothing left behind', async () => {
    const first = await started(['--user', 'nobody']);
    try {
      const second = await lab.exec('fw', [process.execPath, CLI, '--user', 'nobody', '--pidfile', join(dir, 'second.pid')], { reject: false, timeout: 30_000 });
      expect(second.exitCode).toBe(1);
      expect(second.stderr).toMatch(/^ftp-proxy: bind failed: 127\.0\.0\.1 port 8021: Address already in use$/m);
      expect((await lab.get('curl', 'pasv')).ok).toBe(true); // the first one is untouched
    } finally {
      await first.stop();
    }
    expect(await lab.tableExists()).toBe(false);
  });

  it('a compromised network process gets refusals, not firewall changes; only a sound pinhole goes in', async () => {
    const run = lab.spawn('fw', [process.execPath, `${ROOT}test/helpers/privsep-parent.mjs`, `${ROOT}test/helpers/evil-child.mjs`, '-D', '7']);
    let out = '';
    run.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    run.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      for (let i = 0; i < 300 && !/parent: (ready|start failed)/.test(out); i++) await sleep(100);
      expect(out).toMatch(/parent: ready/);
      const answer = (name: string): { ok: boolean; error?: string; instance?: string } => JSON.parse(new RegExp(`^answer ${name} (.*)$`, 'm').exec(out)![1]!);
      expect(answer('bind-other')).toMatchObject({ ok: false, error: 'bind 0.0.0.0 port 22: not a listener of this daemon' });
      expect(answer('bind')).toMatchObject({ ok: true });
      expect(answer('bind-again')).toMatchObject({ ok: false });
      expect(answer('init')).toMatchObject({ ok: true, instance: expect.stringMatching(/^[0-9a-f]{8}$/) });
      const refused: [string, RegExp][] = [
        ['to-ssh', /rdrPort below 1024/],
        ['foreign-owner', /owner instance "deadbeef" is not this instance/],
        ['family-mix', /rdrTo: not a canonical IPv4 address/],
        ['nat-from-elsewhere', /203\.0\.113\.99 is not an address of this host/],
        ['rule-text', /unexpected field "comment"/],
        ['many', /1 to 2 pinholes per request/],
        ['garbage', /unknown request "exec"/],
      ];
      for (const [name, why] of refused) {
        const a = answer(name);
        expect(a.ok, name).toBe(false);
        expect(a.error, name).toMatch(/^refused by the privileged process: /);
        expect(a.error, name).toMatch(why);
        expect(out, name).toMatch(new RegExp(`^privsep: refused a request of the network process: .*${why.source}`, 'm'));
      }
      expect(answer('good')).toEqual({ id: expect.any(Number), ok: true });
      // Exactly the sound pinhole is in the kernel: its elements, no others, nothing to port 22.
      const table = (await lab.exec('fw', ['nft', 'list', 'table', 'inet', 'ftp-proxy'])).stdout;
      expect(table).toMatch(/198\.51\.100\.21 \. 40000/);
      expect(table).not.toMatch(/\. 22\b|203\.0\.113\.99|deadbeef|flush/);
    } finally {
      run.kill('SIGKILL');
    }
  });

  it('FTP_PROXY_PRIVSEP=0 keeps one process (as before the split)', async () => {
    const p = await started(['--user', 'nobody', '-D', '6'], { FTP_PROXY_PRIVSEP: '0' });
    try {
      expect(p.log).not.toMatch(/network process/);
      expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    } finally {
      await p.stop();
    }
  });
});
