// Never leave a hole open, never fall over (issue 4): single-use and self-expiring pinholes, SIGKILL
// mid-transfer, a clean stop with 50 live sessions, no bounce, faults, limits. Each test asserts on the
// kernel firewall's state, not only on what the proxy says.
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, EXAMPLES, Lab, type ProxyProcess, requireLab, ROOT } from './lab.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The first JSON line a background raw client prints. */
function firstJson(child: ChildProcess, ms = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`no output within ${ms} ms: ${buf}`)), ms);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      }
    });
  });
}

const BACKENDS: { backend: Backend; ruleset: string; args: string[]; env: Record<string, string> }[] = [
  { backend: 'nftables', ruleset: `${EXAMPLES}forward-redirect.nft`, args: [], env: {} },
  {
    backend: 'iptables',
    ruleset: `${ROOT}iptables-examples/forward-redirect.rules`,
    args: ['--backend', 'iptables'],
    env: { FTP_PROXY_IPTABLES: 'iptables-nft' },
  },
];

beforeAll(requireLab);

describe.each(BACKENDS)('pinholes with $backend', ({ backend, ruleset, args, env }) => {
  let lab: Lab;
  let proxy: ProxyProcess | null = null;
  beforeAll(async () => {
    lab = await Lab.up('forward');
    lab.iptables = 'iptables-nft';
    await lab.loadRuleset(lab.closedLan(ruleset)); // a second connection to a used pinhole must time out
  });
  afterEach(async () => {
    await proxy?.stop();
    proxy = null;
  });
  afterAll(async () => {
    await lab?.down();
  });

  it('single use: while the first data connection is open, a second one to the same proxy port is dropped', async () => {
    proxy = await lab.proxy(['-D', '6', ...args], env);
    const r = await lab.raw(['pasv-twice', lab.target]);
    expect(r.first, JSON.stringify(r)).toBe('connected');
    expect(r.second, JSON.stringify(r)).toBe('timeout');
  });

  it('a first SYN lost on the way still gets through on its retransmit', async () => {
    proxy = await lab.proxy(['-D', '6', ...args], env);
    // On the server: drop the first SYN of every passive data connection (and count it).
    const synloss = [
      'table inet synloss {',
      '  set seen { type ipv4_addr . inet_service; flags timeout; timeout 60s; }',
      '  chain in { type filter hook input priority filter; policy accept;',
      '    tcp dport 50000-50999 tcp flags & (syn | ack) == syn ip saddr . tcp sport != @seen add @seen { ip saddr . tcp sport } counter drop',
      '  }',
      '}',
      '',
    ].join('\n');
    await execa('ip', ['netns', 'exec', lab.srv, 'bash', '-c', 'nft -f <(cat)'], { input: synloss });
    try {
      const r = await lab.get('curl', 'pasv');
      expect(r.ok, r.output).toBe(true);
      const counter = (await lab.exec('srv', ['nft', 'list', 'table', 'inet', 'synloss'])).stdout;
      expect(Number(/counter packets (\d+)/.exec(counter)?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      await lab.exec('srv', ['nft', 'delete', 'table', 'inet', 'synloss'], { reject: false });
    }
  });

  it('a pinhole nobody uses expires by itself (--pinhole-timeout 2)', async () => {
    proxy = await lab.proxy(['-D', '6', '--pinhole-timeout', '2', ...args], env);
    const waiting = lab.raw(['pasv-wait', lab.target, '4']);
    await proxy.waitFor(/passive: client to server port/);
    expect(await lab.pinholeObjects(backend)).toBeGreaterThan(0);
    const r = await waiting; // the session is still open; the pinhole is not
    expect(r.after, JSON.stringify(r)).toBe('timeout');
    if (backend === 'nftables') {
      // The kernel removed the elements itself (iptables keeps the inert rule until the session ends).
      expect(await lab.pinholeObjects(backend)).toBe(0);
    }
  });

  it('SIGKILL mid-transfer: the transfer completes; the next start removes every object of the dead instance before it serves', async () => {
    proxy = await lab.proxy(['-D', '6', ...args], env);
    const dest = `${lab.runDir}/dl/killed.bin`;
    const slow = lab.rawSpawn(['retr', lab.target, 'test20M.bin', dest, String(6_000_000)]);
    const done = firstJson(slow, 60_000);
    await sleep(1200);
    expect(await lab.pinholeObjects(backend)).toBeGreaterThan(0);
    await proxy.signal('SIGKILL');
    proxy = null;
    const r = await done;
    expect(r.done, JSON.stringify(r)).toBe(true);
    expect(createHash('sha256').update(readFileSync(dest)).digest('hex')).toBe(lab.sha256('test20M.bin'));
    expect(await lab.pinholeObjects(backend)).toBeGreaterThan(0); // the dead instance's, until the next start
    proxy = await lab.proxy(['-D', '6', ...args], env);
    const lines = proxy.lines;
    const swept = lines.findIndex((l) => /stale|removed the chains/.test(l));
    const listening = lines.findIndex((l) => /^listening on /.test(l));
    expect(swept).toBeGreaterThanOrEqual(0);
    expect(swept).toBeLessThan(listening);
    expect(await lab.pinholeObjects(backend)).toBe(0);
    expect((await lab.get('lftp', 'port')).ok).toBe(true);
  });

  const signals = backend === 'nftables' ? (['SIGTERM', 'SIGINT', 'SIGHUP'] as const) : (['SIGTERM'] as const);
  it.each(signals)('%s with 50 live sessions: exit status 0, "exiting on signal N", nothing left in the firewall', async (sig) => {
    // 50 sessions from one client address: above the default --max-per-client (a quarter of -m).
    proxy = await lab.proxy(['-D', '5', '--max-per-client', '100', ...args], env);
    const holder = lab.rawSpawn(['sessions', lab.target, '50']);
    try {
      const r = await firstJson(holder, 60_000);
      expect(r.ready).toBe(50);
      expect(await lab.pinholeObjects(backend)).toBeGreaterThanOrEqual(50);
      const n = { SIGTERM: 15, SIGINT: 2, SIGHUP: 1 }[sig];
      expect(await proxy.signal(sig)).toBe(0);
      expect(proxy.log).toMatch(new RegExp(`^exiting on signal ${n}$`, 'm'));
      expect(await lab.proxyObjects(backend)).toBe(false);
    } finally {
      holder.kill('SIGKILL');
      proxy = null;
    }
  });
});

describe('no bounce, no abuse (nftables)', () => {
  let lab: Lab;
  let proxy: ProxyProcess;
  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
    proxy = await lab.proxy(['-D', '7']);
  });
  afterAll(async () => {
    await lab?.down();
  });

  it.each([
    ['a third host', 'PORT 10,9,9,9,%hi,%lo'],
    ['the firewall itself (LAN side)', 'PORT 192,168,1,1,%hi,%lo'],
    ['the firewall itself (server side)', 'PORT 198,51,100,1,%hi,%lo'],
    ['the server', 'EPRT |1|198.51.100.21|%p|'],
  ])('PORT/EPRT naming %s: the data connection still only joins the two control peers', async (_what, line) => {
    const r = await lab.raw(['active-listen', lab.target, line]);
    expect(r.portReply, JSON.stringify(r)).toMatch(/^200 /);
    // The server's connection reached the client (the only place it can go), from the server's address.
    const conns = r.connections as string[];
    expect(conns.length, JSON.stringify(r)).toBe(1);
    expect(conns[0]).toMatch(/^(::ffff:)?198\.51\.100\.21:/);
  });

  it.each(['PORT 192,168,1,10,0,21', 'PORT 192,168,1,10,3,255', 'EPRT |1|192.168.1.10|22|', 'PORT 1,2,3', 'EPRT |9|x|1|'])(
    '%s gets an FTP error reply and opens nothing',
    async (line) => {
      const before = proxy.lines.length;
      const r = await lab.raw(['lines', lab.target, line, 'NOOP']);
      const [reply, noop] = r.replies as string[];
      expect(reply).toMatch(/^50[01] /);
      expect(noop).toMatch(/^200 /); // the session goes on
      const log = proxy.lines.slice(before).join('\n');
      expect(log).toMatch(/bad port in '/);
      expect(log).not.toMatch(/active: server to client/);
      expect(await lab.pinholeElements()).toBe(0);
    },
  );

  it('a server advertising a wrong address in its 227: the client is told the server it dialled, and the transfer works', async () => {
    await lab.sh('ftpd-restart', 'MasqueradeAddress 203.0.113.99');
    try {
      const raw = await lab.raw(['lines', lab.target, 'PASV']);
      expect((raw.replies as string[])[0]).toMatch(/^227 Entering Passive Mode \(198,51,100,21,\d+,\d+\)$/);
      expect(proxy.log).toMatch(/server: 227 Entering Passive Mode \(203,0,113,99,/);
      for (const client of ['lftp', 'curl'] as const) expect((await lab.get(client, 'pasv')).ok).toBe(true);
    } finally {
      await lab.sh('ftpd-restart');
    }
  });

  it('227 and 229 naming a low port: 425 to the client, CRIT in the log, no pinhole', async () => {
    await lab.sh('ftpd-stop');
    const stub = lab.spawn('srv', [
      process.execPath,
      '-e',
      `require('net').createServer((s) => {
         s.write('220 stub\\r\\n');
         s.on('data', (d) => { for (const l of d.toString().split('\\r\\n').filter(Boolean)) {
           const v = l.split(' ')[0].toUpperCase();
           s.write(v === 'PASV' ? '227 Entering Passive Mode (10,9,9,9,0,21)\\r\\n' : v === 'EPSV' ? '229 Entering Extended Passive Mode (|||22|)\\r\\n' : v === 'QUIT' ? '221 bye\\r\\n' : '230 ok\\r\\n');
         } });
       }).listen(21, '198.51.100.21');`,
    ]);
    try {
      await sleep(400);
      const before = proxy.lines.length;
      const r = await lab.raw(['lines', lab.target, 'PASV', 'EPSV', 'NOOP']);
      const [pasv, epsv, noop] = r.replies as string[];
      expect(pasv).toMatch(/^425 /);
      expect(epsv).toMatch(/^425 /);
      expect(noop).toMatch(/^230 /);
      expect(proxy.lines.slice(before).filter((l) => /bad port in/.test(l))).toHaveLength(2);
      expect(await lab.pinholeElements()).toBe(0);
    } finally {
      stub.kill();
      await lab.sh('ftpd-start');
    }
  });
});

describe('a control connection aimed at the proxy itself', () => {
  let lab: Lab;
  afterAll(async () => {
    await lab?.down();
  });

  it('gets 421 instead of looping', async () => {
    lab = await Lab.up('forward');
    // A ruleset that (wrongly) lets clients reach the listener directly, and a proxy on the LAN address.
    const dir = mkdtempSync(join(tmpdir(), 'ftpp-self-'));
    const text = readFileSync(`${EXAMPLES}forward-redirect.nft`, 'utf8').replace(
      'iifname $lan_if ip saddr $lan_net tcp dport 8021 ct status dnat accept',
      'iifname $lan_if ip saddr $lan_net tcp dport 8021 accept',
    );
    writeFileSync(join(dir, 'open.nft'), text);
    try {
      await lab.loadRuleset(join(dir, 'open.nft'));
      const proxy = await lab.proxy(['-D', '6', '-b', '192.168.1.1']);
      const direct = await lab.exec('cli', ['bash', '-c', 'exec 3<>/dev/tcp/192.168.1.1/8021; timeout 3 head -1 <&3'], { reject: false });
      expect(direct.stdout, proxy.log).toMatch(/^421 This is a transparent FTP proxy/);
      expect(proxy.log).toMatch(/refusing connection from 192\.168\.1\.10 to the proxy itself/);
      expect(proxy.log).not.toMatch(/FTP session/); // it never connected anywhere
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('faults', () => {
  let lab: Lab;
  let proxy: ProxyProcess;
  const wrap = mkdtempSync(join(tmpdir(), 'ftpp-wrap-'));
  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
    // An nft that fails on demand: with $wrap/fail it reports what the file says.
    writeFileSync(
      join(wrap, 'nft'),
      `#!/bin/sh\nif [ -s ${wrap}/fail ]; then echo "Error: $(cat ${wrap}/fail)" >&2; exit 1; fi\nexec /usr/sbin/nft "$@"\n`,
    );
    chmodSync(join(wrap, 'nft'), 0o755);
    // PATH without /usr/sbin: only the wrapper provides nft (so that removing it makes nft missing).
    proxy = await lab.proxy(['-D', '6'], { FTP_PROXY_NFT: 'nft', PATH: `${wrap}:/usr/local/bin:/usr/bin:/bin` });
  });
  afterAll(async () => {
    await lab?.down();
    rmSync(wrap, { recursive: true, force: true });
  });

  it('server unreachable: 421 to the client and one log line', async () => {
    const before = proxy.lines.length;
    const r = await lab.raw(['greet', '198.51.100.99']);
    expect(r.reply).toMatch(/^421 /);
    expect(r.closed).toBe(true);
    const log = proxy.lines.slice(before);
    expect(log.filter((l) => /proxy cannot connect to server 198\.51\.100\.99|server refused connection/.test(l))).toHaveLength(1);
  });

  it('server refusing: 421 and "server refused connection"', async () => {
    await lab.sh('ftpd-stop');
    try {
      const before = proxy.lines.length;
      const r = await lab.raw(['greet', lab.target]);
      expect(r.reply).toMatch(/^421 /);
      expect(proxy.lines.slice(before).filter((l) => /server refused connection/.test(l))).toHaveLength(1);
    } finally {
      await lab.sh('ftpd-start');
    }
  });

  it('server silent (no banner in 30 s): 421 and "server timeout"', async () => {
    await lab.sh('ftpd-stop');
    const mute = lab.spawn('srv', [process.execPath, '-e', "require('net').createServer(() => {}).listen(21, '198.51.100.21')"]);
    try {
      await sleep(300);
      const before = proxy.lines.length;
      const r = await lab.raw(['greet', lab.target], 45_000);
      expect(r.reply).toMatch(/^421 /);
      expect(proxy.lines.slice(before).filter((l) => /server timeout$/.test(l))).toHaveLength(1);
    } finally {
      mute.kill();
      await lab.sh('ftpd-start');
    }
  }, 60_000);

  it('the client resets mid-transfer: the session ends and its pinholes go', async () => {
    const slow = lab.rawSpawn(['retr', lab.target, 'test20M.bin', '/dev/null', String(2_000_000)]);
    await proxy.waitFor(/passive: client to server port/);
    await sleep(500);
    expect(await lab.pinholeElements()).toBeGreaterThan(0);
    slow.kill('SIGKILL');
    expect(await lab.waitNoPinholes()).toBe(0);
  });

  it('the server resets mid-transfer: the session ends and its pinholes go', async () => {
    const before = proxy.lines.length;
    const slow = lab.rawSpawn(['retr', lab.target, 'test20M.bin', '/dev/null', String(2_000_000)]);
    await sleep(1000);
    expect(await lab.pinholeElements()).toBeGreaterThan(0);
    // The proftpd process serving this session: a child of the master.
    const master = readFileSync(`${lab.runDir}/proftpd.pid`, 'utf8').trim();
    const kids = (await execa('pgrep', ['-P', master], { reject: false })).stdout.split('\n').filter(Boolean);
    expect(kids.length).toBeGreaterThan(0);
    for (const k of kids) process.kill(Number(k), 'SIGKILL');
    expect(await lab.waitNoPinholes()).toBe(0);
    expect(proxy.lines.slice(before).join('\n')).toMatch(/server (close|reset connection)/);
    slow.kill('SIGKILL');
  });

  it.each([
    ['permission denied', 'Could not process rule: Operation not permitted'],
    ['the table gone and not recreatable', 'Could not process rule: No such file or directory'],
  ])('a firewall operation fails (%s): 425, a CRIT line, and the session and the daemon go on', async (_what, error) => {
    writeFileSync(join(wrap, 'fail'), error);
    if (/No such file/.test(error)) await lab.exec('fw', ['nft', 'delete', 'table', 'inet', 'ftp-proxy']);
    try {
      const before = proxy.lines.length;
      const r = await lab.raw(['lines', lab.target, 'PASV', 'NOOP']);
      const [pasv, noop] = r.replies as string[];
      expect(pasv).toMatch(/^425 /);
      expect(noop).toMatch(/^200 /);
      expect(proxy.lines.slice(before).join('\n')).toMatch(/^#\d+ nftables operation failed: /m);
    } finally {
      rmSync(join(wrap, 'fail'), { force: true });
    }
    expect((await lab.get('curl', 'pasv')).ok).toBe(true); // the daemon goes on, and repairs
  });

  it('nft missing at run time: 425 and a CRIT line; back once it is there again', async () => {
    rmSync(join(wrap, 'nft'));
    const r = await lab.raw(['lines', lab.target, 'EPSV']);
    expect((r.replies as string[])[0]).toMatch(/^425 /);
    expect(proxy.log).toMatch(/nftables operation failed: .*(ENOENT|not found)/);
    writeFileSync(join(wrap, 'nft'), '#!/bin/sh\nexec /usr/sbin/nft "$@"\n');
    chmodSync(join(wrap, 'nft'), 0o755);
    expect((await lab.get('curl', 'epsv')).ok).toBe(true);
  });

  it('iptables missing at run time: 425 and a CRIT line', async () => {
    await proxy.stop();
    const ipt = mkdtempSync(join(tmpdir(), 'ftpp-ipt-'));
    for (const t of ['iptables', 'iptables-restore', 'iptables-save', 'ip6tables', 'ip6tables-restore', 'ip6tables-save']) {
      writeFileSync(join(ipt, t), `#!/bin/sh\nexec /usr/sbin/${t.replace(/^(ip6?tables)/, '$1-nft')} "$@"\n`);
      chmodSync(join(ipt, t), 0o755);
    }
    try {
      const p = await lab.proxy(['-D', '6', '--backend', 'iptables'], { FTP_PROXY_IPTABLES: join(ipt, 'iptables') });
      expect((await lab.get('curl', 'pasv')).ok).toBe(true);
      rmSync(ipt, { recursive: true, force: true });
      // The kept iptables-restore processes were started before: end them (ours, by PID), so that the
      // next change must start the tool again.
      const kept = (await execa('ps', ['-o', 'pid=,args=', '--ppid', String(p.child.pid)])).stdout
        .split('\n')
        .filter((l) => /-restore --noflush --wait$/.test(l))
        .map((l) => Number(l.trim().split(/\s+/)[0]));
      expect(kept.length).toBeGreaterThanOrEqual(1);
      for (const pid of kept) process.kill(pid, 'SIGKILL');
      const r = await lab.raw(['lines', lab.target, 'PASV', 'NOOP']);
      expect((r.replies as string[])[0]).toMatch(/^425 /);
      expect((r.replies as string[])[1]).toMatch(/^200 /);
      expect(p.log).toMatch(/iptables operation failed: /);
      await p.stop();
    } finally {
      rmSync(ipt, { recursive: true, force: true });
    }
  });
});

describe('limits', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
  });
  afterAll(async () => {
    await lab?.down();
  });

  it('-m 3: the fourth connection gets 421 and is closed, logged once', async () => {
    const proxy = await lab.proxy(['-D', '6', '-m', '3', '--max-per-client', '3']);
    const holder = lab.rawSpawn(['sessions', lab.target, '3']);
    try {
      expect((await firstJson(holder)).ready).toBe(3);
      const r = await lab.raw(['greet', lab.target]);
      expect(r.reply).toMatch(/^421 Too many connections \(client limit 3 reached\)/);
      expect(r.closed).toBe(true);
      expect(proxy.lines.filter((l) => /^client limit \(3\) reached, refusing connection from 192\.168\.1\.10$/.test(l))).toHaveLength(1);
    } finally {
      holder.kill('SIGKILL');
      await proxy.stop();
    }
  });

  it('out of file descriptors (ulimit -n 128): every connection is answered, the daemon survives and serves again', async () => {
    // The proxy started through a shell that lowers its descriptor limit.
    const child = lab.spawn('fw', ['bash', '-c', `ulimit -n 128; exec ${process.execPath} ${ROOT}dist/cli.js -d -D6 -m 500 --max-per-client 500`]);
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      for (let i = 0; i < 50 && !/listening on/.test(log); i++) await sleep(100);
      expect(log).toMatch(/file descriptor limit 128 holds only \d+ sessions/);
      const r = await lab.raw(['greet-many', lab.target, '300']);
      expect(r.silent, JSON.stringify(r)).toBe(0);
      expect(Number(r.greeted)).toBeGreaterThan(0);
      expect(Number(r.refused)).toBeGreaterThan(0);
      expect(child.exitCode).toBeNull();
      expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
