// The policy through the daemon with real sockets on loopback and the in-memory firewall: SIGUSR1's
// reload (live sessions keep their policy), the idle timer at rest during a transfer, and both kinds of
// joined data connection (the fake firewall's local pinholes are "applied" by connecting to where they
// redirect, as the kernel's DNAT would). C=127.0.0.4, proxy listener OS=127.0.0.2, S=127.0.0.3, P=127.0.0.5.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { memoryLog } from '../../src/log.js';
import { freePort } from '../helpers/daemon-rig.js';
import { LineClient } from '../helpers/ftp-peers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const DATA = Buffer.alloc(300_000, 0x5a);

/**
 * A small FTP server on 127.0.0.3: PASV opens a real data listener; PORT/EPRT make it connect; RETR sends
 * DATA over the data connection between a 150 and a 226 that comes `transferMs` later.
 */
interface TestServer {
  port: number;
  received: string[];
  /** Where an active-mode data connection really goes (the kernel's DNAT, for the test). */
  redirect: ((target: { host: string; port: number }) => { host: string; port: number }) | null;
}

async function server(transferMs = 0): Promise<TestServer> {
  const received: string[] = [];
  const ctl: TestServer = { port: 0, received, redirect: null };
  const srv: Server = createServer((s) => {
    s.on('error', () => undefined);
    s.write('220 ready\r\n');
    let pasv: Promise<Socket> | null = null;
    let active: { host: string; port: number } | null = null;
    let buf = '';
    s.on('data', async (d) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        received.push(line);
        const [verb, arg = ''] = line.split(' ');
        switch (verb!.toUpperCase()) {
          case 'PASV': {
            const l = createServer();
            l.listen(0, '127.0.0.3');
            await once(l, 'listening');
            const p = (l.address() as { port: number }).port;
            pasv = once(l, 'connection').then(([c]) => {
              l.close();
              return c as Socket;
            });
            s.write(`227 Entering Passive Mode (127,0,0,3,${p >> 8},${p & 255})\r\n`);
            break;
          }
          case 'PORT': {
            const n = arg.split(',').map(Number);
            active = { host: n.slice(0, 4).join('.'), port: n[4]! * 256 + n[5]! };
            s.write('200 PORT ok\r\n');
            break;
          }
          case 'RETR': {
            s.write('150 opening\r\n');
            const target = active && (ctl.redirect?.(active) ?? active);
            const data = pasv ? await pasv : connect({ host: target!.host, port: target!.port, localAddress: '127.0.0.3' });
            if (!pasv) await once(data, 'connect');
            data.end(DATA);
            await new Promise((r) => setTimeout(r, transferMs));
            s.write('226 done\r\n');
            break;
          }
          case 'QUIT':
            s.end('221 bye\r\n');
            break;
          default:
            s.write(verb!.toUpperCase() === 'USER' ? '331 password\r\n' : verb!.toUpperCase() === 'PASS' ? '230 in\r\n' : '200 ok\r\n');
        }
      }
    });
  });
  srv.listen(0, '127.0.0.3');
  await once(srv, 'listening');
  cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
  ctl.port = (srv.address() as { port: number }).port;
  return ctl;
}

async function rig(policy: string, flags: string[] = [], transferMs = 0) {
  const srv = await server(transferMs);
  const dir = mkdtempSync(join(tmpdir(), 'ftpp-policy-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'test.policy');
  writeFileSync(file, policy);
  const port = await freePort();
  const out = parseCommandLine(['-d', '-D', '7', '-b', '127.0.0.2', '-p', String(port), '-a', '127.0.0.5', '-R', '127.0.0.3', '-P', String(srv.port), '-f', file, ...flags]);
  if (!('config' in out)) throw new Error(out.stderr);
  const fw = new FakeFirewall();
  const { log, lines } = memoryLog(7);
  const daemon = new Daemon({ config: out.config, log, firewall: fw, unprivileged: true });
  await daemon.start();
  cleanups.push(() => daemon.stop());
  const client = async (): Promise<LineClient> => {
    const s = connect({ port, host: '127.0.0.2', localAddress: '127.0.0.4' });
    await once(s, 'connect');
    const c = new LineClient(s);
    cleanups.push(() => c.close());
    expect(await c.next()).toBe('220 ready\r\n');
    c.send('USER lab\r\nPASS lab\r\n');
    expect(await c.next()).toBe('331 password\r\n');
    expect(await c.next()).toBe('230 in\r\n');
    return c;
  };
  return { daemon, fw, lines, file, srv, client };
}

/** Read a whole connection. */
const drain = (s: Socket): Promise<Buffer> =>
  new Promise((resolve) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
  });

describe('reload', () => {
  it('new sessions get the new policy, live ones keep theirs; a broken file changes nothing', async () => {
    const r = await rig('command MKD reject 550 "old"\n');
    const live = await r.client();
    writeFileSync(r.file, 'command NOOP reject 502 "new"\n');
    expect(r.daemon.reloadPolicy()).toBe(true);
    expect(r.lines.some((l) => /reloaded: .*; 1 live session\(s\) keep the previous one/.test(l))).toBe(true);
    const fresh = await r.client();
    fresh.send('NOOP\r\nMKD x\r\n');
    expect(await fresh.next()).toBe('502 new\r\n');
    expect(await fresh.next()).toBe('200 ok\r\n');
    live.send('MKD x\r\nNOOP\r\n');
    expect(await live.next()).toBe('550 old\r\n');
    expect(await live.next()).toBe('200 ok\r\n');

    writeFileSync(r.file, 'data_mode sideways\n');
    expect(r.daemon.reloadPolicy()).toBe(false);
    expect(r.lines).toContain(`${r.file}:1: data_mode: expected keep, passive or active, not "sideways"`);
    const again = await r.client();
    again.send('NOOP\r\n');
    expect(await again.next()).toBe('502 new\r\n');
    expect(r.daemon.sessionCount).toBe(3);
  });

  it('a mistake in the file stops the start', async () => {
    await expect(rig('max_line_length 9999\n')).rejects.toThrow(/test\.policy:1: max_line_length: expected a number from 1 to 498/);
  });
});

describe('the idle timer during a transfer', () => {
  it('-t 1 and a transfer whose 226 comes 2.5 s after its 150: the session lives on, and times out when idle again', async () => {
    const r = await rig('', ['-t', '1'], 2500);
    const c = await r.client();
    c.send('PASV\r\n');
    expect(await c.next()).toMatch(/^227 /);
    // The pinhole would join C to S; here the test connects to the server's data port itself.
    const pin = [...r.fw.live.values()][0]![0]!;
    const data = connect({ host: pin.rdrTo, port: pin.rdrPort });
    const got = drain(data);
    c.send('RETR f\r\n');
    expect(await c.next()).toBe('150 opening\r\n');
    expect(await c.next(5000)).toBe('226 done\r\n');
    expect((await got).length).toBe(DATA.length);
    expect(r.lines.some((l) => /timeout/.test(l))).toBe(false);
    expect(await c.waitClosed(3000)).toBe(true); // idle after the transfer: -t applies again
    expect(r.lines.some((l) => /#1 client timeout/.test(l))).toBe(true);
  });
});

describe('joined data connections', () => {
  it('data_mode passive: client PORT, the server is asked PASV, the proxy connects to both and relays (and --metrics counts it)', async () => {
    const mport = await freePort();
    const r = await rig('data_mode passive\n', ['--metrics', `127.0.0.2:${mport}`]);
    const c = await r.client();
    const l = createServer();
    l.listen(0, '127.0.0.4');
    await once(l, 'listening');
    cleanups.push(() => new Promise<void>((res) => l.close(() => res())));
    const p = (l.address() as { port: number }).port;
    const accepted = once(l, 'connection');
    c.send(`PORT 127,0,0,4,${p >> 8},${p & 255}\r\n`);
    expect(await c.next()).toBe('200 PORT command successful\r\n');
    expect(r.srv.received).toContain('PASV');
    expect(r.srv.received.some((x) => x.startsWith('PORT'))).toBe(false);
    const [sock] = (await accepted) as [Socket];
    const got = drain(sock);
    c.send('RETR f\r\n');
    expect(await c.next()).toBe('150 opening\r\n');
    expect(await c.next()).toBe('226 done\r\n');
    expect((await got).equals(DATA)).toBe(true);
    expect(r.fw.live.size).toBe(0); // outward only: no pinhole at all
    // The join's bytes once it has ended, and the negotiation as a join.
    const sample = async (name: string): Promise<number | undefined> => {
      const text = await (await fetch(`http://127.0.0.2:${mport}/metrics`)).text();
      const line = text.split('\n').find((x) => x.startsWith(`${name} `));
      return line === undefined ? undefined : Number(line.slice(name.length + 1));
    };
    for (let i = 0; i < 100 && (await sample('ftp_proxy_relayed_bytes_total{kind="join",direction="to_client"}')) === undefined; i++) await new Promise((res) => setTimeout(res, 20));
    expect(await sample('ftp_proxy_relayed_bytes_total{kind="join",direction="to_client"}')).toBe(DATA.length);
    expect(await sample('ftp_proxy_negotiations_total{mode="join",result="ok"}')).toBe(1);
  });

  it('data_mode active: client PASV, two local pinholes, PORT to the server; the connections the pinholes admit are joined', async () => {
    const r = await rig('data_mode active\n');
    const c = await r.client();
    c.send('PASV\r\n');
    const reply = (await c.next())!;
    const m = /^227 Entering Passive Mode \(127,0,0,2,(\d+),(\d+)\)\r\n$/.exec(reply);
    expect(m, reply).not.toBeNull();
    const pp = Number(m![1]) * 256 + Number(m![2]);
    const [toClient, toServer] = [...r.fw.live.values()][0]!;
    expect(toClient).toMatchObject({ kind: 'local', side: 'client', from: '127.0.0.4', to: '127.0.0.2', toPort: pp });
    expect(toServer).toMatchObject({ kind: 'local', side: 'server', from: '127.0.0.3', to: '127.0.0.5', rdrTo: '127.0.0.5' });
    const port = r.srv.received.find((x) => x.startsWith('PORT'))!;
    const n = port.slice(5).split(',').map(Number);
    expect(n.slice(0, 4).join('.')).toBe('127.0.0.5');
    expect(n[4]! * 256 + n[5]!).toBe(toServer!.toPort);
    // The kernel would DNAT C -> OS:pp to the client-side listener; the test dials it directly.
    const data = connect({ host: toClient!.rdrTo, port: toClient!.rdrPort, localAddress: '127.0.0.4' });
    const got = drain(data);
    // The server dials P:pp2, which the kernel would DNAT to the server-side listener.
    r.srv.redirect = (t) => {
      expect(t).toEqual({ host: '127.0.0.5', port: toServer!.toPort });
      return { host: toServer!.rdrTo, port: toServer!.rdrPort };
    };
    c.send('RETR f\r\n');
    expect(await c.next()).toBe('150 opening\r\n');
    expect(await c.next()).toBe('226 done\r\n');
    expect((await got).equals(DATA)).toBe(true);
    c.send('QUIT\r\n');
    expect(await c.next()).toBe('221 bye\r\n');
    await c.waitClosed();
    await new Promise((res) => setTimeout(res, 100));
    expect(r.fw.live.size).toBe(0); // the session's end took the local pinholes out
    expect(r.lines.some((l) => /data connection joined by the proxy ended: 300000 bytes to the client, 0 to the server/.test(l))).toBe(true);
  });
});
