// Joined data connections (data_mode) hold no descriptor longer than they must: a leg that failed is
// closed with the join, one join per session (the next negotiation closes the previous one), an idle
// join closes, the session's end closes the last one, and joins count against -m (issue 11, item 3).
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DataJoin } from '../../src/data/join.js';
import { daemonRig, type DaemonRig } from '../helpers/daemon-rig.js';
import { LineClient } from '../helpers/ftp-peers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const fds = (): number => readdirSync('/proc/self/fd').length;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function listen(host: string, opts: { allowHalfOpen?: boolean } = {}): Promise<{ server: Server; port: number; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = createServer(opts, (s) => {
    s.on('error', () => undefined);
    accepted.push(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  cleanups.push(() => {
    for (const s of accepted) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { server, port: (server.address() as { port: number }).port, accepted };
}

async function until(f: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await sleep(20);
  return f();
}

describe('DataJoin', () => {
  it('connect: when one leg fails, the leg that connected is closed too (no CLOSE_WAIT)', async () => {
    const server = await listen('127.0.0.3');
    const dead = await listen('127.0.0.4');
    const deadPort = dead.port;
    await new Promise((r) => dead.server.close(r)); // nobody listens there now: ECONNREFUSED
    const failed = DataJoin.connect({ host: '127.0.0.3', port: server.port }, { host: '127.0.0.4', port: deadPort }, 2000);
    await expect(failed).rejects.toThrow(/client 127\.0\.0\.4 port \d+: ECONNREFUSED/);
    expect(await until(() => server.accepted.length === 1, 1000)).toBe(true);
    const leg = server.accepted[0]!;
    const closed = leg.readableEnded || leg.destroyed ? Promise.resolve() : once(leg, 'end');
    leg.resume();
    await expect(Promise.race([closed.then(() => 'closed'), sleep(1000).then(() => 'still open')])).resolves.toBe('closed');
  });

  it('a spliced join with no byte either way for its idle time closes', async () => {
    const server = await listen('127.0.0.3', { allowHalfOpen: true });
    const client = await listen('127.0.0.4', { allowHalfOpen: true });
    const j = await DataJoin.connect({ host: '127.0.0.3', port: server.port }, { host: '127.0.0.4', port: client.port }, 2000, 300);
    let ended: string | undefined;
    j.onEnd((st) => (ended = st.error ?? 'no error'));
    expect(await until(() => ended !== undefined, 2000)).toBe(true);
    expect(ended).toBe('no data for 0 s');
    expect(j.ended).toBe(true);
  });
});

/** A server for data_mode passive: PASV opens a data listener, RETR sends DATA on it and ends it. */
async function passiveServer(): Promise<{ port: number }> {
  const srv = createServer((s) => {
    s.on('error', () => undefined);
    s.write('220 ready\r\n');
    let data: Promise<Socket> | null = null;
    let buf = '';
    s.on('data', async (d) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const verb = buf.slice(0, nl).trim().split(' ')[0]!.toUpperCase();
        buf = buf.slice(nl + 1);
        if (verb === 'PASV') {
          const l = createServer();
          l.listen(0, '127.0.0.3');
          await once(l, 'listening');
          const p = (l.address() as { port: number }).port;
          data = once(l, 'connection').then(([c]) => {
            l.close();
            return c as Socket;
          });
          s.write(`227 Entering Passive Mode (127,0,0,3,${p >> 8},${p & 255})\r\n`);
        } else if (verb === 'RETR') {
          s.write('150 opening\r\n');
          const c = await data!;
          c.on('error', () => undefined);
          c.end('x'.repeat(1000));
          await once(c, 'finish');
          s.write('226 done\r\n');
        } else if (verb === 'QUIT') s.end('221 bye\r\n');
        else s.write(verb === 'USER' ? '331 pw\r\n' : verb === 'PASS' ? '230 in\r\n' : '200 ok\r\n');
      }
    });
  });
  srv.listen(0, '127.0.0.3');
  await once(srv, 'listening');
  cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
  return { port: (srv.address() as { port: number }).port };
}

describe('joins in the daemon (data_mode passive)', () => {
  let rig: DaemonRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  async function passiveRig(flags: string[] = []): Promise<{ rig: DaemonRig; c: LineClient }> {
    const srv = await passiveServer();
    // The scripted server of the rig is not used: -P points at the passive server.
    const r = await daemonRig(['-P', String(srv.port), ...flags], { policy: 'data_mode passive\n' });
    rig = r;
    return { rig: r, c: await r.loggedIn() };
  }

  it('20 PORT+RETR rounds with a client that keeps its data connections open: one join at a time, none after QUIT', async () => {
    const { c } = await passiveRig();
    // The client keeps every data connection open (half-open after the server's FIN): its sockets
    // are counted too, ROUNDS of them, so the proxy's share is what lies beyond.
    const client = await listen('127.0.0.4', { allowHalfOpen: true });
    const ROUNDS = 20;
    const before = fds();
    for (let i = 0; i < ROUNDS; i++) {
      c.send(`PORT 127,0,0,4,${client.port >> 8},${client.port & 255}\r\n`);
      expect(await c.next()).toBe('200 PORT command successful\r\n');
      c.send('RETR f\r\n');
      expect(await c.next()).toBe('150 opening\r\n');
      expect(await c.next()).toBe('226 done\r\n');
    }
    await sleep(100);
    const proxyHeld = fds() - before - ROUNDS;
    expect(proxyHeld).toBeLessThanOrEqual(2 + 1); // the last join's two legs (and a spare for noise)
    c.send('QUIT\r\n');
    expect(await c.next()).toBe('221 bye\r\n');
    // The last join carried bytes: it may finish its tail, and goes once quiet (5 s after the end).
    expect(await until(() => fds() - before - ROUNDS <= -4, 8000)).toBe(true); // the control connections (4 here) and the join
  }, 20_000);

  it('-m counts joins: with -m 2, a session holding a join leaves no slot for another session', async () => {
    const { rig: r, c } = await passiveRig(['-m', '2', '--max-per-client', '2']);
    const client = await listen('127.0.0.4', { allowHalfOpen: true });
    c.send(`PORT 127,0,0,4,${client.port >> 8},${client.port & 255}\r\n`);
    expect(await c.next()).toBe('200 PORT command successful\r\n');
    const other = await r.connect('127.0.0.6');
    expect(await other.next()).toBe('421 Too many connections (client limit 2 reached), try again later.\r\n');
  });
});
