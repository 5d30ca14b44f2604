// The cron watchdog runs as root what `<pidfile>.cmdline` says: it must never run a file that anyone but
// root could have written, and the daemon's pidfile writes never follow a symbolic link. Also: with
// --user, root writes both files (the user only writes its pid through a descriptor root opened), and
// the watchdog restarts such a daemon after a kill -9.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lchownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, CLI, EXAMPLES, Lab, requireLab, ROOT } from './lab.js';

const WATCHDOG = `${ROOT}scripts/ftp-proxy-watchdog`;
const NOBODY = 65534;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(requireLab);

/** A syslog socket of the test's own (Node has no unix datagram sockets): what the watchdog says. */
function syslogReceiver(dir: string): { sock: string; text: () => string; stop: () => void } {
  const sock = join(dir, 'log.sock');
  const file = join(dir, 'syslog.txt');
  const rx: ChildProcess = spawn('python3', [
    '-c',
    `import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nf=open(sys.argv[2],'a',buffering=1)\nwhile True:\n  f.write(s.recv(4096).decode()+'\\n')`,
    sock,
    file,
  ]);
  return { sock, text: () => (existsSync(file) ? readFileSync(file, 'utf8') : ''), stop: () => rx.kill() };
}

describe('the watchdog runs only what root wrote', () => {
  const top = mkdtempSync(join(tmpdir(), 'ftpp-trust-'));
  chmodSync(top, 0o755);
  const logs = syslogReceiver(top);
  /** A dead pid: a process that has exited (its number is not reused within the test). */
  let dead = 0;

  beforeAll(async () => {
    const p = await execa('sh', ['-c', 'echo $$']);
    dead = Number(p.stdout);
    for (let i = 0; i < 100 && !existsSync(logs.sock); i++) await sleep(100);
  });
  afterAll(() => {
    logs.stop();
    rmSync(top, { recursive: true, force: true });
  });

  // Each case: a fresh directory with a root-owned pidfile naming a dead pid and a command file that
  // would create MARKER; `spoil` makes one thing untrustworthy.
  const cases: [string, RegExp, (d: string, pidfile: string, cmd: string) => void][] = [
    ['a command file owned by the daemon user', /cmdline is owned by uid 65534, not root/, (_d, _p, cmd) => chownSync(cmd, NOBODY, NOBODY)],
    ['a command file writable by others', /cmdline is writable by group or others \(mode 666\)/, (_d, _p, cmd) => chmodSync(cmd, 0o666)],
    ['a command file writable by its group', /cmdline is writable by group or others \(mode 664\)/, (_d, _p, cmd) => chmodSync(cmd, 0o664)],
    [
      'a command file that is a symbolic link to a root-owned file',
      /cmdline is a symbolic link/,
      (d, _p, cmd) => {
        writeFileSync(join(d, 'elsewhere'), readFileSync(cmd));
        rmSync(cmd);
        symlinkSync(join(d, 'elsewhere'), cmd);
      },
    ],
    ['a pidfile owned by the daemon user', /ftp-proxy\.pid is owned by uid 65534, not root/, (_d, pidfile) => chownSync(pidfile, NOBODY, NOBODY)],
    ['a directory the daemon user owns', /directory .* is owned by uid 65534, not root/, (d) => chownSync(d, NOBODY, NOBODY)],
    ['a directory others may write (not sticky)', /directory .* is writable by group or others \(mode 777\)/, (d) => chmodSync(d, 0o777)],
  ];

  it.each(cases)('refuses %s: says why through syslog, exits 1, never runs it', async (name, why, spoil) => {
    const d = join(top, name.replace(/\W+/g, '-'));
    mkdirSync(d, { mode: 0o755 });
    const pidfile = join(d, 'ftp-proxy.pid');
    const cmd = `${pidfile}.cmdline`;
    const marker = join(d, 'MARKER');
    writeFileSync(pidfile, `${dead}\n`, { mode: 0o644 });
    writeFileSync(cmd, ['/bin/sh', '-c', `touch ${marker}`].map((a) => `${a}\0`).join(''), { mode: 0o644 });
    spoil(d, pidfile, cmd);
    const r = await execa(WATCHDOG, ['--pidfile', pidfile], { env: { FTP_PROXY_SYSLOG: logs.sock }, reject: false, timeout: 20_000 });
    expect(r.exitCode).toBe(1);
    await sleep(1500); // anything it started would have run by now
    expect(existsSync(marker)).toBe(false);
    const line = logs.text().split('\n').find((l) => l.includes(`refusing ${d}/`));
    expect(line, logs.text()).toMatch(/^<27>.* ftp-proxy-watchdog(\[\d+\])?: refusing .*; not starting ftp-proxy from it$/);
    expect(line).toMatch(why);
  });

  it('in a sticky directory (as /tmp) it creates nothing: a link planted where a lock file would go is not followed', async () => {
    const d = join(top, 'sticky');
    mkdirSync(d);
    chmodSync(d, 0o1777);
    const pidfile = join(d, 'ftp-proxy.pid');
    writeFileSync(pidfile, `${process.pid}\n`, { mode: 0o644 }); // a live daemon: nothing to start
    const target = join(d, 'created-by-root');
    symlinkSync(target, `${pidfile}.watchdog.lock`);
    lchownSync(`${pidfile}.watchdog.lock`, NOBODY, NOBODY);
    const r = await execa(WATCHDOG, ['--pidfile', pidfile], { env: { FTP_PROXY_SYSLOG: logs.sock }, reject: false, timeout: 20_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(existsSync(target)).toBe(false);
  });

  it('the same files, written by root as they should be, are run (the cases above differ in one thing only)', async () => {
    const d = join(top, 'sound');
    mkdirSync(d, { mode: 0o755 });
    const pidfile = join(d, 'ftp-proxy.pid');
    const marker = join(d, 'MARKER');
    writeFileSync(pidfile, `${dead}\n`, { mode: 0o644 });
    // It also writes its pid and lives a little, as a daemon would, so that the watchdog is content.
    const script = `touch ${marker}; echo $$ > ${pidfile}; exec sleep 2`;
    writeFileSync(`${pidfile}.cmdline`, ['/bin/sh', '-c', script].map((a) => `${a}\0`).join(''), { mode: 0o644 });
    const r = await execa(WATCHDOG, ['--pidfile', pidfile], { env: { FTP_PROXY_SYSLOG: logs.sock }, reject: false, timeout: 20_000 });
    expect(r.exitCode).toBe(0);
    expect(existsSync(marker)).toBe(true);
  });
});

describe('the daemon writes its pidfile as root only, never through a link', () => {
  let lab: Lab;
  const dir = mkdtempSync(join(tmpdir(), 'ftpp-pidf-'));
  chmodSync(dir, 0o755);
  const logs = syslogReceiver(dir);
  const env = { FTP_PROXY_SYSLOG: logs.sock };

  beforeAll(async () => {
    for (let i = 0; i < 100 && !existsSync(logs.sock); i++) await sleep(100);
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
  });
  afterAll(async () => {
    for (const f of ['user.pid', 'root.pid']) {
      try {
        const pid = Number(readFileSync(join(dir, f), 'utf8').trim());
        if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        // not running
      }
    }
    logs.stop();
    await lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a pidfile path that is a symbolic link is not followed (nor is the command file beside it)', async () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    const link = join(dir, 'link.pid');
    symlinkSync(victim, link);
    symlinkSync(victim, `${join(dir, 'link2.pid')}.cmdline`);
    // As root (-d: the daemon writes it), and with --user (root creates it before the drop).
    const p = await lab.proxy(['--pidfile', link]);
    expect(await p.waitFor(/cannot write pidfile/)).toMatch(/link\.pid is a symbolic link: not followed/);
    await p.stop();
    const q = await lab.proxy(['--pidfile', join(dir, 'link2.pid')]);
    expect(await q.waitFor(/cannot write pidfile/)).toMatch(/link2\.pid\.cmdline is a symbolic link: not followed/);
    await q.stop();
    const u = await lab.exec('fw', [process.execPath, CLI, '-d', '--user', 'nobody', '--pidfile', link], { reject: false, timeout: 15_000 });
    expect(u.exitCode).toBe(1);
    expect(u.stderr).toMatch(/^ftp-proxy: cannot write pidfile \S*link\.pid: \S*link\.pid is a symbolic link: not followed$/m);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  it('--user: root owns the pidfile and the command file (0644); the watchdog restarts the daemon after a kill -9', async () => {
    const pidfile = join(dir, 'user.pid');
    const r = await execa('ip', ['netns', 'exec', lab.fw, process.execPath, CLI, '-D', '6', '--user', 'nobody', '--pidfile', pidfile], {
      env,
      reject: false,
      timeout: 15_000,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of [pidfile, `${pidfile}.cmdline`]) {
      const st = statSync(f);
      expect([st.uid, st.mode & 0o777], f).toEqual([0, 0o644]);
    }
    const pid = Number(readFileSync(pidfile, 'utf8').trim());
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+65534\s/m);
    // The daemon's descriptor 4 is that pidfile, open for writing: how it writes its pid.
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
    const w = await execa('ip', ['netns', 'exec', lab.fw, WATCHDOG, '--pidfile', pidfile], { env, reject: false, timeout: 30_000 });
    expect(w.exitCode, `${w.stderr}\n${logs.text()}`).toBe(0);
    const again = Number(readFileSync(pidfile, 'utf8').trim());
    expect(again).not.toBe(pid);
    expect(readFileSync(`/proc/${again}/status`, 'utf8')).toMatch(/^Uid:\s+65534\s/m);
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    // A clean stop empties the root-owned pidfile through the descriptor: the watchdog leaves it stopped.
    process.kill(again, 'SIGTERM');
    for (let i = 0; i < 50 && alive(again); i++) await sleep(100);
    expect(readFileSync(pidfile, 'utf8')).toBe('');
    const idle = await execa('ip', ['netns', 'exec', lab.fw, WATCHDOG, '--pidfile', pidfile], { env, reject: false, timeout: 30_000 });
    expect(idle.exitCode).toBe(0);
    expect(readFileSync(pidfile, 'utf8')).toBe('');
  });
});
