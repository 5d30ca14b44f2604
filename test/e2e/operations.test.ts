// The daemon as an admin runs it: flags that change the rules (-T, -v, -vv, -q), the nft fallback,
// daemon mode (pidfile, syslog), an admin's ruleset reload under it, a SIGKILL and the next start.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, EXAMPLES, Lab, requireLab } from './lab.js';

beforeAll(requireLab);

describe('forward lab, flags and operations', () => {
  let lab: Lab;
  const tmp = mkdtempSync(join(tmpdir(), 'ftpp-ops-'));

  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
  });
  afterAll(async () => {
    await lab?.down();
    rmSync(tmp, { recursive: true, force: true });
  });
  afterEach(async () => {
    // Each test loads the shipped example again; a test may have changed the ruleset.
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
  });

  it('-T 42: the ruleset accepts "ct mark 42" instead of "ct status dnat"; without -T that ruleset drops the data', async () => {
    const example = readFileSync(`${EXAMPLES}forward-redirect.nft`, 'utf8');
    const tagged = example.replace('ct status dnat accept comment "ftp-proxy: data connections', 'ct mark 42 accept comment "ftp-proxy: data connections');
    expect(tagged).not.toBe(example);
    const file = join(tmp, 'tagged.nft');
    writeFileSync(file, tagged);
    await lab.loadRuleset(file);

    const plain = await lab.proxy([]);
    // Active: the server's data connection comes in from outside (passive ones leave the LAN, which the
    // ruleset lets out anyway).
    expect((await lab.get('curl', 'port', 'small.txt', { TMO: '2', MAXT: '6' })).ok).toBe(false);
    await plain.stop();

    const p = await lab.proxy(['-T', '42']);
    const r = await lab.get('curl', 'pasv');
    expect(r.ok, r.output).toBe(true);
    expect((await lab.get('lftp', 'port')).ok).toBe(true);
    const chains = (await lab.exec('fw', ['nft', 'list', 'table', 'inet', 'ftp-proxy'])).stdout;
    expect(chains).toMatch(/ct mark set 0x0000002a/);
    await p.stop();
  });

  it('-T must be a number on Linux', async () => {
    const r = await lab.exec('fw', [process.execPath, CLI, '-d', '-T', 'mytag'], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^ftp-proxy: tag "mytag": on Linux -T is a conntrack mark/m);
  });

  it('-v logs the first packet of each data connection; -vv and -q act on every packet, both directions', async () => {
    const v = await lab.proxy(['-v']);
    expect((await lab.get('curl', 'epsv')).ok).toBe(true);
    const t1 = (await lab.exec('fw', ['nft', 'list', 'table', 'inet', 'ftp-proxy'])).stdout;
    expect(t1).toMatch(/chain pinhole-[0-9a-f]{8} \{\s+log prefix "ftp-proxy: "/);
    await v.stop();

    const vv = await lab.proxy(['-vv', '-q', '1:10']);
    // While a rate-limited passive download runs, the per-packet rule has counted the server's data
    // (server -> client: megabytes), not only the client's ACKs (kilobytes).
    const download = lab.get('lftp', 'pasv', 'test20M.bin', { RATE: '4M' });
    await new Promise((r) => setTimeout(r, 2500));
    const mid = (await lab.exec('fw', ['nft', 'list', 'chain', 'inet', 'ftp-proxy', 'perpacket'])).stdout;
    const m = /ct label \d+ counter packets \d+ bytes (\d+) log prefix "ftp-proxy: " meta priority set 1:10 comment "pinhole-[0-9a-f]{8}"/.exec(mid);
    expect(m, mid).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(4_000_000);
    expect((await download).ok).toBe(true);
    const pin = (await lab.exec('fw', ['nft', 'list', 'table', 'inet', 'ftp-proxy'])).stdout;
    expect(pin).toMatch(/ct label set \d+/);
    await vv.stop();
  });

  it('works through the nft command when asked to (FTP_PROXY_NFT=nft)', async () => {
    const p = await lab.proxy(['-D', '6'], { FTP_PROXY_NFT: 'nft' });
    expect(p.log).toMatch(/through nft\)/);
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    expect((await lab.get('curl', 'port')).ok).toBe(true);
    expect(await lab.waitNoPinholes()).toBe(0);
    await p.stop();
  });

  it('two instances share the table: the one that stops first leaves it to the other', async () => {
    const a = await lab.proxy(['-D', '6']);
    const b = await lab.proxy(['-D', '6', '-p', '8022']); // idle: no session, no pinhole
    await b.stop();
    expect(await lab.tableExists()).toBe(true);
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    expect(a.log).not.toMatch(/missing or damaged/);
    await a.stop();
    expect(await lab.tableExists()).toBe(false);
  });

  it('repairs its table after an admin reloads the ruleset (flush ruleset) under it', async () => {
    const p = await lab.proxy(['-D', '6']);
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    // What an admin's /etc/nftables.conf starting with "flush ruleset" does (the examples replace only
    // their own table).
    await lab.exec('fw', ['nft', 'flush', 'ruleset']);
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
    expect(await lab.tableExists()).toBe(false);
    const r = await lab.get('lftp', 'pasv');
    expect(r.ok, `${r.output}\n${p.log}`).toBe(true);
    expect(p.log).toMatch(/table inet ftp-proxy is missing or damaged .* recreating it/);
    expect((await lab.get('lftp', 'port')).ok).toBe(true);
    await p.stop();
  });

  it('after a SIGKILL, the next start removes what the dead instance left', async () => {
    const p = await lab.proxy(['-D', '7', '-t', '60']);
    // A session that negotiates and then stays idle: its pinhole is live when the daemon dies.
    const client = lab.spawn('cli', ['bash', '-c', `exec 3<>/dev/tcp/${lab.target}/21; printf 'USER lab\\r\\nPASS lab\\r\\nPASV\\r\\n' >&3; sleep 20`]);
    await p.waitFor(/passive: client to server port/);
    expect(await lab.pinholeElements()).toBeGreaterThan(0);
    expect(await p.signal('SIGKILL')).toBe(null);
    expect(await lab.pinholeElements()).toBeGreaterThan(0);
    const next = await lab.proxy(['-D', '6']);
    expect(next.log).toMatch(/removed \d+ stale element\(s\) left by 1 dead instance\(s\)/);
    expect(await lab.pinholeElements()).toBe(0);
    client.kill();
    await next.stop();
  });

  it('daemonizes without -d: the parent exits 0 when it listens, pidfile, syslog; SIGHUP ends it cleanly', async () => {
    const sock = join(tmp, 'log.sock');
    const received = join(tmp, 'syslog.txt');
    // A syslog receiver of the test's own (Node has no unix datagram sockets).
    const rx = spawn('python3', [
      '-c',
      `import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nf=open(sys.argv[2],'a',buffering=1)\nwhile True:\n  f.write(s.recv(4096).decode()+'\\n')`,
      sock,
      received,
    ]);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const pidfile = join(tmp, 'ftp-proxy.pid');
      const started = await execa('ip', ['netns', 'exec', lab.fw, process.execPath, CLI, '-D', '6', '--pidfile', pidfile], {
        env: { FTP_PROXY_SYSLOG: sock },
        reject: false,
        timeout: 15_000,
      });
      expect(started.exitCode, started.stderr).toBe(0);
      const pid = Number(readFileSync(pidfile, 'utf8').trim());
      expect(process.kill(pid, 0)).toBe(true);
      // The daemon process runs with V8's young generation kept small (see src/cli.ts).
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('--max-semi-space-size=1');
      expect((await lab.get('curl', 'pasv')).ok).toBe(true);
      process.kill(pid, 'SIGHUP');
      const end = Date.now() + 5000;
      while (Date.now() < end) {
        try {
          process.kill(pid, 0);
          await new Promise((r) => setTimeout(r, 50));
        } catch {
          break;
        }
      }
      expect(() => process.kill(pid, 0)).toThrow();
      expect(() => readFileSync(pidfile)).toThrow(); // removed on exit
      const log = readFileSync(received, 'utf8');
      // facility daemon (3): <29> notice, <30> info, <27> err
      expect(log).toMatch(new RegExp(`^<29>\\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d ftp-proxy\\[${pid}\\]: listening on 127\\.0\\.0\\.1 port 8021$`, 'm'));
      expect(log).toMatch(new RegExp(`^<30>.* ftp-proxy\\[${pid}\\]: #1 FTP session 1/100 started`, 'm'));
      expect(log).toMatch(new RegExp(`^<27>.* ftp-proxy\\[${pid}\\]: exiting on signal 1$`, 'm'));
      expect(await lab.tableExists()).toBe(false);
    } finally {
      rx.kill();
    }
  });

  it('a start-up failure in daemon mode reaches the terminal with status 1', async () => {
    const first = await lab.proxy([]);
    const second = await lab.exec('fw', [process.execPath, CLI], { reject: false, timeout: 15_000 });
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toMatch(/^ftp-proxy: bind failed: 127\.0\.0\.1 port 8021: Address already in use$/m);
    await first.stop();
  });

  it('refuses to start without CAP_NET_ADMIN', async () => {
    const r = await lab.exec('fw', ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, CLI, '-d'], {
      reject: false,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^ftp-proxy: needs to start as root \(or with CAP_NET_ADMIN\)$/m);
  });
});

describe('the built command line (OpenBSD messages and exit status)', () => {
  it.each([
    [['-D', '8'], 'ftp-proxy: loglevel too large\n'],
    [['-m', '501'], 'ftp-proxy: max sessions too large\n'],
    [['-m', '0'], 'ftp-proxy: max sessions too small\n'],
    [['-t', '86401'], 'ftp-proxy: timeout too large\n'],
    [['-vvv'], null],
    [['-Z'], 'ftp-proxy: unknown option -- Z\n'],
  ])('%j exits 1', async (args, first) => {
    const r = await execa(process.execPath, [CLI, ...args], { reject: false });
    expect(r.exitCode).toBe(1);
    if (first) expect(r.stderr.split('\n')[0] + '\n').toBe(first);
    if (!first || first.includes('unknown')) expect(r.stderr).toMatch(/usage: ftp-proxy \[-6Adrv\]/);
  });
});
