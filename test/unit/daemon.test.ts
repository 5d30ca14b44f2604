// The daemon and its sessions with real sockets on loopback, a scripted FTP server and the in-memory
// firewall: what reaches each side, which pinholes are asked for, limits, timeouts, refusals, cleanup.
// Distinct loopback addresses keep the roles apart: client C=127.0.0.4, proxy listener OS=127.0.0.2,
// server S=127.0.0.3, proxy source (-a) P=127.0.0.5.
import { once } from 'node:events';
import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCommandLine, type Config } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { Log, memoryLog } from '../../src/log.js';
import { freePort } from '../helpers/daemon-rig.js';
import { LineClient, scriptedServer, type ScriptedServer } from '../helpers/ftp-peers.js';

function config(args: string[]): Config {
  const out = parseCommandLine(args);
  if (!('config' in out)) throw new Error(out.stderr);
  return out.config;
}

interface Rig {
  daemon: Daemon;
  fw: FakeFirewall;
  lines: string[];
  server: ScriptedServer;
  port: number;
  connect(): Promise<LineClient>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(
  extra: string[] = [],
  opts: { greeting?: string | null; bannerTimeout?: number; serverPort?: number; random?: () => number; json?: boolean } = {},
): Promise<Rig> {
  const server = await scriptedServer(opts.greeting === undefined ? {} : { greeting: opts.greeting }, '127.0.0.3');
  cleanups.push(() => server.close());
  const port = await freePort('127.0.0.2');
  const fw = new FakeFirewall();
  const { log: textLog, lines } = memoryLog(7);
  const log = opts.json ? new Log({ level: 7, format: 'json', write: (l) => lines.push(l.trimEnd()) }) : textLog;
  const cfg = config(['-d', '-D', '7', '-b', '127.0.0.2', '-p', String(port), '-a', '127.0.0.5', '-R', '127.0.0.3', '-P', String(opts.serverPort ?? server.port), ...extra]);
  const daemon = new Daemon({
    config: cfg,
    log,
    firewall: fw,
    unprivileged: true,
    ...(opts.bannerTimeout !== undefined ? { bannerTimeout: opts.bannerTimeout } : {}),
    ...(opts.random ? { random: opts.random } : {}),
  });
  await daemon.start();
  cleanups.push(() => daemon.stop());
  const connect = async (): Promise<LineClient> => {
    const c = await LineClient.connect(port, '127.0.0.2');
    cleanups.push(() => c.close());
    return c;
  };
  return { daemon, fw, lines, server, port, connect };
}

/** A client-side connection from 127.0.0.4 (so C differs from every other address). */
async function clientFrom4(port: number): Promise<LineClient> {
  const { connect } = await import('node:net');
  const s = connect({ port, host: '127.0.0.2', localAddress: '127.0.0.4' });
  await once(s, 'connect');
  const c = new LineClient(s);
  cleanups.push(() => c.close());
  return c;
}

async function login(c: LineClient): Promise<void> {
  expect(await c.next()).toBe('220 scripted ready\r\n');
  c.send('USER lab\r\n');
  expect(await c.next()).toBe('331 password\r\n');
  c.send('PASS lab\r\n');
  expect(await c.next()).toBe('230 logged in\r\n');
}

const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('sessions through the daemon (reverse mode on loopback)', () => {
  it('PASV: the client is told OS and a proxy port; the pinhole joins C to S:p from P', async () => {
    const r = await rig();
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PASV\r\n');
    const reply = (await c.next())!;
    const m = /^227 Entering Passive Mode \(127,0,0,2,(\d+),(\d+)\)\r\n$/.exec(reply);
    expect(m).not.toBeNull();
    const pp = Number(m![1]) * 256 + Number(m![2]);
    expect(pp).toBeGreaterThanOrEqual(49152);
    expect(pp).toBeLessThanOrEqual(65534);
    expect([...r.fw.live.values()]).toEqual([
      [{ family: 4, kind: 'passive', from: '127.0.0.4', to: '127.0.0.2', toPort: pp, rdrTo: '127.0.0.3', rdrPort: 50000, natFrom: '127.0.0.5' }],
    ]);
    expect(r.lines).toContain(`#1 passive: client to server port 50000 via port ${pp}`);
    expect(r.lines).toContain('#1 FTP session 1/100 started: client 127.0.0.4 to server 127.0.0.3 via proxy 127.0.0.5');
  });

  it('PORT naming a third host: the server is sent P and pp, the pinhole still goes to C (scenario 17)', async () => {
    const r = await rig();
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PORT 10,9,9,9,156,187\r\n');
    expect(await c.next()).toBe('200 PORT ok\r\n');
    const sent = r.server.received.find((l) => l.startsWith('PORT'))!;
    const m = /^PORT 127,0,0,5,(\d+),(\d+)\r\n$/.exec(sent);
    expect(m).not.toBeNull();
    const pp = Number(m![1]) * 256 + Number(m![2]);
    expect([...r.fw.live.values()][0]).toEqual([
      { family: 4, kind: 'active', from: '127.0.0.3', to: '127.0.0.5', toPort: pp, rdrTo: '127.0.0.4', rdrPort: 40123, natFrom: '127.0.0.2' },
    ]);
  });

  it('-r: PORT data connections get source port 20, EPRT ones do not (scenario 21)', async () => {
    const r = await rig(['-r']);
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PORT 127,0,0,4,156,187\r\n');
    await c.next();
    expect([...r.fw.live.values()][0]![0]!.natPort).toBe(20);
    c.send('EPRT |1|127.0.0.4|40124|\r\n');
    await c.next();
    expect([...r.fw.live.values()][0]![0]!.natPort).toBeUndefined();
  });

  it('each negotiation replaces the session pinholes; QUIT flushes the 221 and clears them (scenarios 19, 24, 31)', async () => {
    const r = await rig();
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PASV\r\n');
    await c.next();
    c.send('EPSV\r\n');
    await c.next();
    expect(r.fw.live.get(`${r.fw.instance}.1`)).toHaveLength(1);
    expect(r.fw.calls.filter((x) => x.op === 'replace')).toHaveLength(2);
    c.send('QUIT\r\n');
    expect(await c.next()).toBe('221 Goodbye.\r\n');
    expect(await c.waitClosed()).toBe(true);
    await until(() => r.fw.live.size === 0);
    expect(r.fw.calls.at(-1)).toEqual({ op: 'clear', owner: `${r.fw.instance}.1` });
    expect(r.lines).toContain('#1 ending session');
  });

  it('pipelined commands go through in order with the rewritten 227 in place', async () => {
    const r = await rig();
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PASV\r\nNOOP\r\nRETR x\r\n');
    expect(await c.next()).toMatch(/^227 Entering Passive Mode \(127,0,0,2,/);
    expect(await c.next()).toBe('200 NOOP ok\r\n');
    expect(await c.next()).toBe('150 opening\r\n');
    expect(await c.next()).toBe('226 done\r\n');
  });

  it('tries another proxy port when the firewall reports the key taken', async () => {
    const seq = [0, 0, 0.5];
    const r = await rig([], { random: () => seq.shift() ?? 0.9 });
    r.fw.taken.add(49152);
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('EPSV\r\n');
    const port = Number(/\(\|\|\|(\d+)\|\)/.exec((await c.next())!)![1]);
    expect(port).toBe(49152 + Math.floor(0.5 * (65534 - 49152 + 1)));
    expect(r.fw.calls.filter((x) => x.op === 'replace')).toHaveLength(3);
  });

  it('a firewall failure gets 425 and a CRIT log; the session and the daemon go on', async () => {
    const r = await rig();
    const c = await clientFrom4(r.port);
    await login(c);
    r.fw.failWith = 'Operation not permitted';
    c.send('PASV\r\n');
    expect(await c.next()).toMatch(/^425 /);
    expect(r.lines).toContain('#1 fake operation failed: Operation not permitted');
    r.fw.failWith = null;
    c.send('NOOP\r\n');
    expect(await c.next()).toBe('200 NOOP ok\r\n');
    const c2 = await clientFrom4(r.port);
    expect(await c2.next()).toBe('220 scripted ready\r\n');
  });
});

describe('limits, timeouts and refusals', () => {
  it('-m: connection N+1 gets 421 and one ERR line, and uses no session id (scenario 7)', async () => {
    const r = await rig(['-m', '1']);
    const c1 = await clientFrom4(r.port);
    expect(await c1.next()).toBe('220 scripted ready\r\n');
    const c2 = await clientFrom4(r.port);
    expect(await c2.next()).toMatch(/^421 Too many connections \(client limit 1 reached\)/);
    expect(await c2.waitClosed()).toBe(true);
    expect(r.lines.filter((l) => l.startsWith('client limit'))).toEqual(['client limit (1) reached, refusing connection from 127.0.0.4']);
    c1.send('QUIT\r\n');
    await c1.waitClosed();
    await until(() => r.daemon.sessionCount === 0);
    const c3 = await clientFrom4(r.port);
    expect(await c3.next()).toBe('220 scripted ready\r\n');
    expect(r.lines).toContain('#2 accepted connection from 127.0.0.4');
  });

  it('a server that never greets: 421 to the client and "server timeout" at NOTICE (scenario 8)', async () => {
    const r = await rig([], { greeting: null, bannerTimeout: 0.3 });
    const c = await clientFrom4(r.port);
    expect(await c.next()).toMatch(/^421 /);
    expect(await c.waitClosed()).toBe(true);
    expect(r.lines).toContain('#1 server timeout');
  });

  it('a server that refuses: 421 to the client and "server refused connection"', async () => {
    const closed = await freePort('127.0.0.3');
    const r = await rig([], { serverPort: closed });
    const c = await clientFrom4(r.port);
    expect(await c.next()).toMatch(/^421 .*cannot connect/);
    expect(r.lines).toContain('#1 server refused connection');
  });

  it('-t: an idle client is timed out, its pinholes go (scenario 9)', async () => {
    const r = await rig(['-t', '1']);
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PASV\r\n');
    await c.next();
    expect(r.fw.live.size).toBe(1);
    expect(await c.waitClosed(3000)).toBe(true);
    expect(r.lines).toContain('#1 client timeout');
    await until(() => r.fw.live.size === 0);
  });

  it('a too-long client line ends the session with 421 (scenario 26)', async () => {
    const r = await rig();
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('NOOP ' + 'x'.repeat(600));
    expect(await c.next()).toMatch(/^421 Command line too long/);
    expect(await c.waitClosed()).toBe(true);
    expect(r.lines).toContain('#1 client command too long or not clean');
  });

  it('stop() ends every session and leaves no pinhole (scenario 25)', async () => {
    const r = await rig();
    const clients = await Promise.all([1, 2, 3].map(() => clientFrom4(r.port)));
    for (const c of clients) {
      await login(c);
      c.send('PASV\r\n');
      await c.next();
    }
    expect(r.fw.live.size).toBe(3);
    await r.daemon.stop();
    expect(r.fw.live.size).toBe(0);
    for (const c of clients) expect(await c.waitClosed()).toBe(true);
  });
});

describe('forward mode', () => {
  it('refuses a client that dials the proxy itself instead of looping (differs from OpenBSD)', async () => {
    const port = await freePort('127.0.0.2');
    const fw = new FakeFirewall();
    const { log, lines } = memoryLog(7);
    const daemon = new Daemon({ config: config(['-d', '-b', '127.0.0.2', '-p', String(port)]), log, firewall: fw, unprivileged: true });
    await daemon.start();
    cleanups.push(() => daemon.stop());
    const c = await clientFrom4(port);
    expect(await c.next()).toMatch(/^421 This is a transparent FTP proxy/);
    expect(await c.waitClosed()).toBe(true);
    expect(lines.some((l) => /^#1 refusing connection from 127\.0\.0\.4 to the proxy itself/.test(l))).toBe(true);
    expect(daemon.sessionCount).toBe(0);
  });
});

describe('descriptor budget', () => {
  it('allows two descriptors a session, after what is open and a reserve', async () => {
    const { sessionCapacity } = await import('../../src/daemon.js');
    const limits = (n: string) => () => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${n}                 4096                 files\n`;
    expect(sessionCapacity(limits('128'), () => 24)).toEqual({ limit: 128, capacity: 36 });
    expect(sessionCapacity(limits('1024'), () => 24)).toEqual({ limit: 1024, capacity: 484 });
    expect(sessionCapacity(limits('40'), () => 24)).toEqual({ limit: 40, capacity: 1 });
    expect(sessionCapacity(limits('unlimited'), () => 24)).toBeNull();
    expect(sessionCapacity(() => { throw new Error('no /proc'); })).toBeNull();
  });
});

describe('--log-format json', () => {
  it('writes one JSON object per event with session, client, server, event and pinhole fields', async () => {
    const r = await rig([], { json: true });
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PASV\r\n');
    await c.next();
    c.send('QUIT\r\n');
    await c.waitClosed();
    await until(() => r.fw.live.size === 0);
    const events = r.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const by = (e: string) => events.filter((x) => x.event === e);
    for (const e of events) {
      // pino's conventions: numeric level (+ syslog's name as label), epoch ms, pid, hostname.
      expect(typeof e.level).toBe('number');
      expect(typeof e.label).toBe('string');
      expect(typeof e.time).toBe('number');
      expect(Math.abs((e.time as number) - Date.now())).toBeLessThan(60_000);
      expect(e.pid).toBe(process.pid);
      expect(e.hostname).toBe(hostname());
      expect(typeof e.msg).toBe('string');
    }
    expect(by('listening')[0]).toMatchObject({ level: 35, label: 'notice', address: '127.0.0.2' });
    expect(by('session-start')[0]).toMatchObject({ level: 30, label: 'info', session: 1, client: '127.0.0.4', server: '127.0.0.3', proxy: '127.0.0.5' });
    const passive = by('passive')[0]!;
    expect(passive).toMatchObject({ level: 30, label: 'info', session: 1, client: '127.0.0.4', server: '127.0.0.3', command: 'PASV', serverPort: 50000 });
    expect(passive.pinhole).toMatch(/^127\.0\.0\.4 -> 127\.0\.0\.2:\d+ => 127\.0\.0\.3:50000 from 127\.0\.0\.5$/);
    expect(by('client-line').map((e) => e.msg)).toContain('#1 client: PASV\\r\\n');
    expect(by('session-end')[0]).toMatchObject({ session: 1 });
  });
});

describe('--metrics', () => {
  const scrape = async (port: number): Promise<(name: string) => number | undefined> => {
    const r = await fetch(`http://127.0.0.2:${port}/metrics`);
    expect(r.status).toBe(200);
    const text = await r.text();
    return (name) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line === undefined ? undefined : Number(line.slice(name.length + 1));
    };
  };

  it('counts sessions, refusals by reason, negotiations by mode and result, live pinholes and firewall operations, served over HTTP', async () => {
    const mport = await freePort('127.0.0.2');
    const r = await rig(['--metrics', `127.0.0.2:${mport}`, '--max-per-client', '1']);
    expect(r.lines.some((l) => l === `metrics on http://127.0.0.2:${mport}/metrics`)).toBe(true);
    const c = await clientFrom4(r.port);
    await login(c);
    c.send('PASV\r\n');
    expect(await c.next()).toMatch(/^227 /);
    c.send('PORT 127,0,0,4,0,21\r\n'); // a port below 1024: refused by the proxy itself
    expect(await c.next()).toMatch(/^5\d\d /);
    let m = await scrape(mport);
    expect(m('ftp_proxy_negotiations_total{mode="passive",result="ok"}')).toBe(1);
    expect(m('ftp_proxy_negotiations_total{mode="active",result="refused"}')).toBe(1);
    expect(m('ftp_proxy_sessions')).toBe(1);
    expect(m('ftp_proxy_sessions_total')).toBe(1);
    expect(m('ftp_proxy_pinholes{backend="fake"}')).toBe(1);
    expect(m('ftp_proxy_firewall_operation_seconds_count{backend="fake",op="replace"}')).toBe(1);

    const second = await clientFrom4(r.port);
    expect(await second.next()).toMatch(/^421 Too many connections from your address/);
    c.send('QUIT\r\n');
    await c.waitClosed();
    await until(() => r.fw.live.size === 0);
    await until(() => r.daemon.sessionCount === 0);
    m = await scrape(mport);
    expect(m('ftp_proxy_sessions')).toBe(0);
    expect(m('ftp_proxy_sessions_total')).toBe(1);
    expect(m('ftp_proxy_sessions_refused_total{reason="max_per_client"}')).toBe(1);
    expect(m('ftp_proxy_pinholes{backend="fake"}')).toBe(0);
  });

  it.each([['9187'], ['127.0.0.1:80'], ['[::1]'], ['127.0.0.1:99999']])('--metrics %s is refused at start', (v) => {
    const out = parseCommandLine(['--metrics', v]);
    expect(out).toMatchObject({ exit: 1, stderr: expect.stringMatching(/--metrics .*: must be ADDRESS:PORT with a port of 1024 or more/) });
  });
});
