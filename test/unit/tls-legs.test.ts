// The TLS legs on loopback, Node against Node: the client leg (proxy = TLS server) lets a client resume
// its control session on a data connection by ticket or by session id, TLS 1.2 and 1.3; the server leg
// (proxy = TLS client) offers the newest session a server gave. Real servers and clients: e2e/tls-*.
import { constants, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { createSecureContext, connect as tlsConnect, createServer as tlsCreateServer, type SecureVersion, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientLeg } from '../../src/tls/client-leg.js';
import { ServerLeg } from '../../src/tls/server-leg.js';
import { SessionIdCache } from '../../src/tls/session-store.js';
import { makeLabPki } from '../helpers/tls-lab.js';

let dir: string;
let ca: string;
let cert: string;
let key: string;

beforeAll(async () => {
  dir = mkdtempSync(`${tmpdir()}/ftpp-tls-`);
  const pki = await makeLabPki(dir);
  ca = pki.caPem;
  ({ certPem: cert, keyPem: key } = await pki.issue('srv', ['ftp.lab', '127.0.0.1']));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A loopback TCP listener handing each accepted socket to `take`. */
async function listener(take: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ pauseOnConnect: true }, take);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

/** A Node TLS client handshake; resolves with the socket and the sessions it got so far. */
async function client(port: number, opts: { version: SecureVersion; session?: Buffer; noTicket?: boolean }) {
  const sessions: Buffer[] = [];
  const s = tlsConnect({
    host: '127.0.0.1',
    port,
    ca,
    minVersion: opts.version,
    maxVersion: opts.version,
    ...(opts.session ? { session: opts.session } : {}),
    ...(opts.noTicket ? { secureOptions: constants.SSL_OP_NO_TICKET } : {}),
  });
  s.on('session', (b: Buffer) => sessions.push(b));
  await once(s, 'secureConnect');
  return { s, sessions };
}

/** Read until a TLS 1.3 ticket has come (it follows the handshake), by a round trip. */
async function settle(s: TLSSocket, sessions: Buffer[]): Promise<void> {
  for (let i = 0; i < 50 && sessions.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  void s;
}

describe('ClientLeg: the client resumes its control session on the data connection', () => {
  const cases: { version: SecureVersion; noTicket: boolean; how: string }[] = [
    { version: 'TLSv1.2', noTicket: false, how: 'session ticket' },
    { version: 'TLSv1.2', noTicket: true, how: 'session id (client without tickets)' },
    { version: 'TLSv1.3', noTicket: false, how: 'TLS 1.3 ticket' },
  ];
  for (const c of cases) {
    it(`${c.version} by ${c.how}; a data connection without it is a full handshake`, async () => {
      const leg = new ClientLeg({ credentials: { cert, key }, context: 'session 7' });
      const accepted: Promise<{ socket: TLSSocket; reused: boolean }>[] = [];
      let first = true;
      const { server, port } = await listener((sock) => {
        if (first) {
          first = false;
          accepted.push(leg.startControl(sock).then((socket) => ({ socket, reused: false })));
        } else accepted.push(leg.acceptData(sock));
      });
      try {
        const ctl = await client(port, c);
        await accepted[0];
        // a round trip on the control connection: the TLS 1.3 ticket is read with it
        const ctlServer = (await accepted[0]!).socket;
        ctlServer.write('200 ok\r\n');
        await once(ctl.s, 'data');
        await settle(ctl.s, ctl.sessions);
        expect(ctl.sessions.length).toBeGreaterThan(0);
        if (c.noTicket) expect(leg.cache.size).toBeGreaterThan(0);

        const data = await client(port, { ...c, session: ctl.sessions.at(-1)! });
        const d = await accepted[1]!;
        expect(d.reused).toBe(true);
        expect(data.s.isSessionReused()).toBe(true);

        const fresh = await client(port, c);
        expect((await accepted[2]!).reused).toBe(false);
        for (const x of [ctl.s, data.s, fresh.s]) x.destroy();
      } finally {
        leg.close();
        server.close();
      }
    });
  }

  it("another FTP session's ticket does not resume here (fresh ticket keys and cache per leg)", async () => {
    const a = new ClientLeg({ credentials: { cert, key } });
    const b = new ClientLeg({ credentials: { cert, key } });
    const got: Promise<{ socket: TLSSocket; reused: boolean }>[] = [];
    const la = await listener((s) => void a.startControl(s).then((t) => t.write('x')));
    const lb = await listener((s) => got.push(b.acceptData(s)));
    try {
      const ctl = await client(la.port, { version: 'TLSv1.3' });
      await once(ctl.s, 'data');
      await settle(ctl.s, ctl.sessions);
      const data = await client(lb.port, { version: 'TLSv1.3', session: ctl.sessions.at(-1)! });
      expect((await got[0]!).reused).toBe(false);
      ctl.s.destroy();
      data.s.destroy();
    } finally {
      a.close();
      b.close();
      la.server.close();
      lb.server.close();
    }
  });

  it("the client's SNI name picks the context (a minted certificate), for control and data alike", async () => {
    const names: string[] = [];
    const ctx = createSecureContext({ cert, key, ticketKeys: randomBytes(48) });
    // the default context has no certificate: only the SNI callback's can finish a handshake
    const leg = new ClientLeg({
      secureContext: createSecureContext({}),
      sniCallback: (name, cb) => {
        names.push(name);
        cb(null, ctx);
      },
    });
    const got: Promise<{ socket: TLSSocket; reused: boolean }>[] = [];
    let first = true;
    const { server, port } = await listener((s) => {
      if (first) {
        first = false;
        got.push(leg.startControl(s).then((t) => (t.write('x'), { socket: t, reused: false })));
      } else got.push(leg.acceptData(s));
    });
    try {
      const dial = async (session?: Buffer) => {
        const sessions: Buffer[] = [];
        const s = tlsConnect({ port, host: '127.0.0.1', servername: 'ftp.lab', ca, ...(session ? { session } : {}) });
        s.on('session', (b: Buffer) => sessions.push(b));
        await once(s, 'secureConnect');
        return { s, sessions };
      };
      const ctl = await dial();
      await once(ctl.s, 'data');
      await settle(ctl.s, ctl.sessions);
      const data = await dial(ctl.sessions.at(-1));
      expect((await got[1]!).reused).toBe(true);
      expect(names[0]).toBe('ftp.lab');
      expect((await got[0]!).socket.servername).toBe('ftp.lab');
      ctl.s.destroy();
      data.s.destroy();
    } finally {
      leg.close();
      server.close();
    }
  });

  it('a client that sends garbage instead of a ClientHello fails the handshake with context', async () => {
    const leg = new ClientLeg({ credentials: { cert, key }, context: 'session 9' });
    let res: Promise<TLSSocket> | undefined;
    const { server, port } = await listener((s) => (res = leg.startControl(s)));
    try {
      const raw = netConnect(port, '127.0.0.1');
      await once(raw, 'connect');
      raw.write('USER anonymous\r\n');
      raw.on('error', () => undefined);
      while (!res) await new Promise((r) => setTimeout(r, 5));
      await expect(res).rejects.toThrow(/^session 9: client 127\.0\.0\.1 port \d+ \(control\): TLS handshake failed: /);
      raw.destroy();
    } finally {
      leg.close();
      server.close();
    }
  });
});

describe('ServerLeg: offers the newest session of the control connection', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as SecureVersion[]) {
    it(`${version}: the data connection resumes (the TLS 1.2 session comes before secureConnect)`, async () => {
      const srv = tlsCreateServer({ cert, key, minVersion: version, maxVersion: version }, (s) => {
        s.on('error', () => undefined);
        s.write('hello\r\n');
      });
      srv.listen(0, '127.0.0.1');
      await once(srv, 'listening');
      const port = (srv.address() as { port: number }).port;
      const dial = async () => {
        const s = netConnect(port, '127.0.0.1');
        await once(s, 'connect');
        return s;
      };
      try {
        const leg = await ServerLeg.startControl(await dial(), { host: '127.0.0.1', port, verify: true, ca, context: 'session 3' });
        await once(leg.control, 'data');
        expect(leg.info).toMatchObject({ version, reused: false });
        const first = await leg.sessions.wait(2000);
        expect(first).toBeDefined();
        // TLS 1.3: Node's server sends two tickets; the tracker holds the last one
        if (version === 'TLSv1.3') {
          for (let i = 0; i < 50 && leg.sessions.received < 2; i++) await new Promise((r) => setTimeout(r, 10));
          expect(leg.sessions.received).toBe(2);
        }
        const d = await leg.connectData(await dial());
        expect(d.reused).toBe(true);
        const plain = await leg.connectData(await dial(), false);
        expect(plain.reused).toBe(false);
        for (const s of [leg.control, d.socket, plain.socket]) s.destroy();
      } finally {
        srv.close();
      }
    });
  }

  it('a server that never answers the ClientHello: the handshake gives up after handshakeTimeoutMs', async () => {
    const { server, port } = await listener((s) => s.on('error', () => undefined));
    try {
      const s = netConnect(port, '127.0.0.1');
      await once(s, 'connect');
      await expect(ServerLeg.startControl(s, { host: '127.0.0.1', port, verify: true, ca, handshakeTimeoutMs: 100 })).rejects.toThrow(
        `server 127.0.0.1 port ${port} (control): TLS handshake failed: ETIMEDOUT: no handshake within 0.1 s`,
      );
    } finally {
      server.close();
    }
  });

  it('an untrusted server certificate: the error names the server, the leg and the reason', async () => {
    const srv = tlsCreateServer({ cert, key }, (s) => s.on('error', () => undefined));
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as { port: number }).port;
    try {
      const s = netConnect(port, '127.0.0.1');
      await once(s, 'connect');
      await expect(ServerLeg.startControl(s, { host: '127.0.0.1', port, verify: true, context: 'session 4' })).rejects.toThrow(
        `session 4: server 127.0.0.1 port ${port} (control): TLS handshake failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE`,
      );
    } finally {
      srv.close();
    }
  });
});

describe('SessionIdCache', () => {
  it('keeps the newest entries up to its bound', () => {
    const c = new SessionIdCache(2);
    c.set(Buffer.from('a'), Buffer.from('1'));
    c.set(Buffer.from('b'), Buffer.from('2'));
    c.set(Buffer.from('a'), Buffer.from('3')); // refreshed: now the newest
    c.set(Buffer.from('c'), Buffer.from('4'));
    expect(c.get(Buffer.from('b'))).toBeUndefined();
    expect(c.get(Buffer.from('a'))?.toString()).toBe('3');
    expect(c.size).toBe(2);
  });
});
