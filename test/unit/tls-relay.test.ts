// relay() on loopback: a TLS data connection on each leg (the proxy terminates both), or one side plain;
// bytes counted each way, the end carried across, backpressure, errors with context.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { connect as tlsConnect, createSecureContext, createServer as tlsCreateServer, TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relay } from '../../src/data/tls-relay.js';
import { ClientLeg } from '../../src/tls/client-leg.js';
import { makeLabPki } from '../helpers/tls-lab.js';

let dir: string;
let ca: string;
let cert: string;
let key: string;
beforeAll(async () => {
  dir = mkdtempSync(`${tmpdir()}/ftpp-relay-`);
  const pki = await makeLabPki(dir);
  ca = pki.caPem;
  ({ certPem: cert, keyPem: key } = await pki.issue('srv', ['127.0.0.1']));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The "FTP server" end: a TLS (or plain) server whose connection handler is `on`. */
async function origin(tls: boolean, on: (s: Socket) => void) {
  const srv = tls ? tlsCreateServer({ cert, key }, on) : createServer(on);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { srv, port: (srv.address() as { port: number }).port };
}

/** The proxy's server-leg data socket: TLS client (or plain) to the origin. */
async function toOrigin(tls: boolean, port: number): Promise<Socket> {
  if (!tls) {
    const s = netConnect(port, '127.0.0.1');
    await once(s, 'connect');
    return s;
  }
  const s = tlsConnect({ host: '127.0.0.1', port, ca });
  await once(s, 'secureConnect');
  return s;
}

/** The client-leg data socket (proxy = TLS server via ClientLeg, or plain) and the FTP client's end. */
async function clientPair(tls: boolean): Promise<{ proxySide: Socket; client: Socket; close: () => void }> {
  const leg = new ClientLeg({ credentials: { cert, key } });
  let take!: (s: Socket) => void;
  const got = new Promise<Socket>((r) => (take = r));
  const l = createServer({ pauseOnConnect: true }, (s) => (tls ? void leg.acceptData(s).then((d) => take(d.socket)) : take(s)));
  l.listen(0, '127.0.0.1');
  await once(l, 'listening');
  const port = (l.address() as { port: number }).port;
  const client = tls ? tlsConnect({ host: '127.0.0.1', port, ca }) : netConnect(port, '127.0.0.1');
  await once(client, tls ? 'secureConnect' : 'connect');
  const proxySide = await got;
  return { proxySide, client, close: () => (leg.close(), l.close()) };
}

function collect(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return once(s, 'end').then(() => Buffer.concat(parts));
}

describe('relay', () => {
  for (const [clientTls, serverTls] of [
    [true, true],
    [true, false],
    [false, true],
  ] as const) {
    const name = `client ${clientTls ? 'TLS' : 'plain'}, server ${serverTls ? 'TLS' : 'plain'}`;
    it(`${name}: a download arrives whole, counted, and both sides close`, async () => {
      const payload = randomBytes(3 * 1024 * 1024 + 17);
      const o = await origin(serverTls, (s) => {
        s.on('error', () => undefined);
        s.end(payload);
      });
      const up = await toOrigin(serverTls, o.port);
      const c = await clientPair(clientTls);
      try {
        const r = relay(c.proxySide, up, { context: 'session 5 data' });
        const got = collect(c.client);
        const body = await got;
        c.client.end();
        const stats = await r.done;
        expect(sha(body)).toBe(sha(payload));
        expect(stats).toEqual({ toClient: payload.length, toServer: 0 });
      } finally {
        c.close();
        o.srv.close();
      }
    });
  }

  it('an upload: the client ends, the server sees the whole file and its end', async () => {
    const payload = randomBytes(2 * 1024 * 1024 + 5);
    let received!: Promise<Buffer>;
    const o = await origin(true, (s) => {
      s.on('error', () => undefined);
      received = collect(s);
      void received.then(() => s.end());
    });
    const up = await toOrigin(true, o.port);
    const c = await clientPair(true);
    try {
      const r = relay(c.proxySide, up);
      c.client.on('data', () => undefined);
      c.client.end(payload);
      const stats = await r.done;
      expect(sha(await received)).toBe(sha(payload));
      expect(stats).toEqual({ toClient: 0, toServer: payload.length });
    } finally {
      c.close();
      o.srv.close();
    }
  });

  it('backpressure: a client that does not read holds the server back', async () => {
    const payload = randomBytes(24 * 1024 * 1024);
    const o = await origin(true, (s) => {
      s.on('error', () => undefined);
      s.end(payload);
    });
    const up = await toOrigin(true, o.port);
    const c = await clientPair(true);
    try {
      c.client.pause();
      const r = relay(c.proxySide, up);
      await new Promise((res) => setTimeout(res, 400));
      // at most the socket buffers (kernel and stream) of both legs, far from the whole file
      expect(r.stats.toClient).toBeLessThan(16 * 1024 * 1024);
      const body = collect(c.client);
      c.client.resume();
      expect((await body).length).toBe(payload.length);
      c.client.end();
      expect((await r.done).toClient).toBe(payload.length);
    } finally {
      c.close();
      o.srv.close();
    }
  });

  it('a server side reset mid-transfer ends both sides, the error says where', async () => {
    // TLS over a JS socket of our own, so the TCP connection underneath can be reset
    const o = await origin(false, (raw) => {
      raw.on('error', () => undefined);
      const s = new TLSSocket(raw, { isServer: true, secureContext: createSecureContext({ cert, key }) });
      s.on('error', () => undefined);
      s.once('secure', () => s.write(randomBytes(64 * 1024), () => setTimeout(() => raw.resetAndDestroy(), 50)));
    });
    const up = await toOrigin(true, o.port);
    const c = await clientPair(true);
    try {
      c.client.on('data', () => undefined);
      c.client.on('error', () => undefined);
      const r = relay(c.proxySide, up, { context: 'session 6 data' });
      const stats = await r.done;
      expect(stats.toClient).toBe(64 * 1024);
      expect(stats.error ?? '').toMatch(/^session 6 data: server side: /);
    } finally {
      c.close();
      o.srv.close();
    }
  });

  it('idleMs: no byte either way for that long ends the relay', async () => {
    const o = await origin(true, (s) => s.on('error', () => undefined));
    const up = await toOrigin(true, o.port);
    const c = await clientPair(true);
    try {
      c.client.on('error', () => undefined);
      const stats = await relay(c.proxySide, up, { context: 'session 2 data', idleMs: 100 }).done;
      expect(stats.error).toBe('session 2 data: no data for 0.1 s');
    } finally {
      c.close();
      o.srv.close();
    }
  });

  it('abort() cuts both sides and says why', async () => {
    const o = await origin(true, (s) => s.on('error', () => undefined));
    const up = await toOrigin(true, o.port);
    const c = await clientPair(true);
    try {
      c.client.on('error', () => undefined);
      const r = relay(c.proxySide, up, { context: 'session 8 data' });
      r.abort('the control session ended');
      expect((await r.done).error).toBe('session 8 data: the control session ended');
    } finally {
      c.close();
      o.srv.close();
    }
  });
});
