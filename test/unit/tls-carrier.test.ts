// TlsCarrier (src/tls/carrier.ts), the stream between a control connection's TCP socket and its TLS, which
// gives the socket back in plain text after CCC. First its record framing against a scripted socket
// (chunks cut anywhere), then real TLS 1.2 and 1.3 over loopback: Node's TLSSocket as the proxy on the
// carrier, a Node client on a carrier of its own so that it can send plain text after its close_notify.
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { createSecureContext, type SecureVersion, connect as tlsConnect, TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TlsCarrier } from '../../src/tls/carrier.js';
import { daemonRig } from '../helpers/daemon-rig.js';
import { makeLabPki } from '../helpers/tls-lab.js';

/** A socket as far as the carrier uses one: 'data'/'end' in, write/pause/resume/destroy out. */
class ScriptedSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  paused = false;
  destroyed = false;
  ended = false;
  readonly remoteAddress = '192.0.2.7';
  readonly remotePort = 40000;
  write(b: Buffer, cb?: () => void): boolean {
    this.written.push(Buffer.from(b));
    cb?.();
    return true;
  }
  end(): this {
    this.ended = true;
    return this;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
}

/** A TLS record: type, version 3.3, length, body. */
const record = (type: number, len: number, fill = 0xaa): Buffer => Buffer.concat([Buffer.from([type, 3, 3, len >> 8, len & 0xff]), Buffer.alloc(len, fill)]);

/** A carrier on a scripted socket, with what it hands the TLS layer collected. */
function scripted(): { sock: ScriptedSocket; carrier: TlsCarrier; toTls: Buffer[]; ended: () => boolean } {
  const sock = new ScriptedSocket();
  const carrier = new TlsCarrier(sock as unknown as Socket);
  const toTls: Buffer[] = [];
  let end = false;
  carrier.on('data', (d: Buffer) => toTls.push(d));
  carrier.on('end', () => (end = true));
  return { sock, carrier, toTls, ended: () => end };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('record framing (scripted socket)', () => {
  const records = Buffer.concat([record(23, 40), record(21, 26), record(23, 300)]);
  const plain = Buffer.from('PASV\r\nLIST\r\n');
  const whole = Buffer.concat([records, plain]);

  // Every cut of the bytes into two or three chunks: headers and bodies split anywhere, the plain
  // bytes alone or glued to the end of the last record.
  const cuts: [string, number[]][] = [
    ['one chunk', []],
    ['plain bytes alone', [records.length]],
    ['inside the first header', [2]],
    ['right after a header', [5]],
    ['inside a body', [20]],
    ['between records', [45]],
    ['inside the last header', [45 + 31 + 3]],
    ['one byte before the plain bytes', [records.length - 1]],
    ['one byte into the plain bytes', [records.length + 1]],
    ['three chunks: in a header and in the last body', [3, records.length - 10]],
  ];

  it.each(cuts)('clear() first, then %s: TLS gets exactly the records, clear\'s callback exactly the plain bytes', async (_, at) => {
    const { sock, carrier, toTls, ended } = scripted();
    await tick();
    let rest: Buffer | null = null;
    const later: Buffer[] = [];
    carrier.clear((r) => {
      rest = r;
      // the session's own listener takes the socket's next bytes
      sock.on('data', (d: Buffer) => later.push(d));
    });
    const bounds = [0, ...at, whole.length];
    for (let i = 0; i + 1 < bounds.length; i++) sock.emit('data', whole.subarray(bounds[i], bounds[i + 1]));
    await tick();
    expect(Buffer.concat(toTls).equals(records)).toBe(true);
    expect(rest).not.toBeNull();
    // the first plain bytes in the callback, the rest after it: exactly the plain text, once, in order
    expect(rest!.length).toBeGreaterThan(0);
    expect(Buffer.concat([rest!, ...later]).toString('latin1')).toBe(plain.toString('latin1'));
    expect(sock.listenerCount('data')).toBe(1); // the session's, not the carrier's
    // the socket is the caller's again: paused, no listener of the carrier left, the TLS stream ended
    expect(sock.paused).toBe(true);
    expect(sock.listenerCount('end')).toBe(0);
    expect(ended()).toBe(true);
    expect(sock.destroyed).toBe(false);
  });

  it('before clear(), everything is TLS (no plain-text detection while the channel is protected)', async () => {
    const { sock, carrier, toTls } = scripted();
    await tick();
    sock.emit('data', Buffer.concat([record(23, 10), record(23, 10)]));
    await tick();
    expect(Buffer.concat(toTls).length).toBe(30);
    expect(carrier.listenerCount('data')).toBe(1);
    expect(sock.listenerCount('data')).toBe(1);
  });

  it('the client\'s close_notify with no plain byte yet: cleared() gives an empty rest, later bytes stay on the socket', async () => {
    const { sock, carrier, toTls, ended } = scripted();
    await tick();
    let rest: Buffer | null = null;
    carrier.clear((r) => (rest = r));
    sock.emit('data', record(21, 26));
    await tick();
    expect(rest).toBeNull();
    carrier.cleared(); // what the session calls on the TLS socket's 'end'
    expect(rest!.length).toBe(0);
    await tick();
    expect(ended()).toBe(true);
    const after: Buffer[] = [];
    sock.on('data', (d: Buffer) => after.push(d));
    sock.emit('data', Buffer.from('PASV\r\n'));
    expect(Buffer.concat(toTls).length).toBe(31);
    expect(after.map(String)).toEqual(['PASV\r\n']);
  });

  it('cleared() before clear() does nothing; clear() called once', async () => {
    const { carrier } = scripted();
    carrier.cleared();
    let calls = 0;
    carrier.clear(() => calls++);
    carrier.cleared();
    carrier.cleared();
    expect(calls).toBe(1);
  });

  it('writes go to the socket until released, then nowhere (the socket is the caller\'s)', async () => {
    const { sock, carrier } = scripted();
    await new Promise<void>((r) => carrier.write(Buffer.from([23, 3, 3, 0, 1, 9]), () => r()));
    expect(sock.written.map((b) => [...b])).toEqual([[23, 3, 3, 0, 1, 9]]);
    carrier.clear(() => undefined);
    carrier.cleared();
    await new Promise<void>((r) => carrier.write(Buffer.from('late TLS bytes'), () => r()));
    expect(sock.written.length).toBe(1);
  });

  it('end() (TLSSocket.end after its close_notify) never ends the socket', async () => {
    const { sock, carrier } = scripted();
    carrier.end();
    await once(carrier, 'finish');
    expect(sock.ended).toBe(false);
    expect(sock.destroyed).toBe(false);
  });

  it('destroyed while it carries TLS: the socket goes too; after clear(): the socket stays', async () => {
    const a = scripted();
    a.carrier.destroy();
    await tick();
    expect(a.sock.destroyed).toBe(true);
    const b = scripted();
    b.carrier.clear(() => undefined);
    b.carrier.destroy();
    await tick();
    expect(b.sock.destroyed).toBe(false);
  });

  it('remoteAddress and remotePort are the socket\'s (for logs and the TLS layer)', () => {
    const { carrier } = scripted();
    expect([carrier.remoteAddress, carrier.remotePort]).toEqual(['192.0.2.7', 40000]);
  });
});

// ---- real TLS over loopback ----

let dir: string;
let ca: string;
let cert: string;
let key: string;

beforeAll(async () => {
  dir = mkdtempSync(`${tmpdir()}/ftpp-carrier-`);
  const pki = await makeLabPki(dir);
  ca = pki.caPem;
  ({ certPem: cert, keyPem: key } = await pki.issue('srv', ['ftp.lab', '127.0.0.1']));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The client's carrier: the next write it is given goes out with `append` in the same socket write. */
class TapCarrier extends TlsCarrier {
  append: Buffer | null = null;
  override _write(chunk: Buffer, enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const a = this.append;
    this.append = null;
    super._write(a ? Buffer.concat([chunk, a]) : chunk, enc, (e) => {
      cb(e);
      this.emit('wrote');
    });
  }
}

/** Collects a readable's bytes; waits for a text to have come. */
class Reader {
  buf = '';
  constructor(r: NodeJS.ReadableStream) {
    r.on('data', (d: Buffer) => (this.buf += d.toString('latin1')));
  }
  async until(text: string, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!this.buf.includes(text)) {
      if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)} within ${ms} ms; have ${JSON.stringify(this.buf)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.buf;
  }
}

interface Pair {
  /** The proxy's side: the TCP socket, its carrier, the TLS socket on the carrier. */
  raw: Socket;
  carrier: TlsCarrier;
  st: TLSSocket;
  /** The client's side, alike. */
  rawC: Socket;
  cc: TapCarrier;
  ct: TLSSocket;
  server: Server;
}

async function tlsPair(version: SecureVersion): Promise<Pair> {
  let resolveRaw!: (s: Socket) => void;
  const accepted = new Promise<Socket>((r) => (resolveRaw = r));
  const server = createServer((s) => resolveRaw(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const rawC = netConnect((server.address() as { port: number }).port, '127.0.0.1');
  rawC.setNoDelay(true);
  rawC.on('error', () => undefined);
  await once(rawC, 'connect');
  const raw = await accepted;
  raw.setNoDelay(true);
  raw.on('error', () => undefined);
  const carrier = new TlsCarrier(raw);
  const st = new TLSSocket(carrier as unknown as Socket, { isServer: true, secureContext: createSecureContext({ key, cert, minVersion: version, maxVersion: version }) });
  st.on('error', () => undefined);
  const cc = new TapCarrier(rawC);
  const ct = tlsConnect({ socket: cc as unknown as Socket, ca, servername: 'ftp.lab', minVersion: version, maxVersion: version });
  ct.on('error', () => undefined);
  await Promise.all([once(st, 'secure'), once(ct, 'secureConnect')]);
  return { raw, carrier, st, rawC, cc, ct, server };
}

function closePair(p: Pair): void {
  for (const s of [p.ct, p.st, p.raw, p.rawC]) s.destroy();
  p.server.close();
}

/**
 * The proxy's side of CCC as src/session.ts does it: the 200 under TLS, keep reading (to see the
 * client's close_notify), clear, close_notify. Resolves with what clear's callback got.
 */
function proxyCcc(p: Pair): Promise<Buffer> {
  return new Promise((resolve) => {
    p.st.write('200 CCC command successful\r\n');
    p.st.on('data', () => undefined);
    p.st.once('end', () => p.carrier.cleared());
    p.carrier.clear(resolve);
    p.st.end();
  });
}

/**
 * The client's side: its close_notify (with `append` glued on in the same socket write), then its own
 * carrier cleared, so that the proxy's plain replies are read as such. Resolves with what clear got.
 */
async function clientCcc(p: Pick<Pair, 'cc' | 'ct'>, append: string | null): Promise<Buffer> {
  if (append !== null) p.cc.append = Buffer.from(append);
  const wrote = once(p.cc, 'wrote');
  p.ct.end();
  await wrote;
  return new Promise<Buffer>((resolve) => {
    p.cc.clear(resolve);
    if (p.ct.readableEnded) p.cc.cleared();
    else p.ct.once('end', () => p.cc.cleared());
  });
}

/** What arrives on a released raw socket after `rest`: the caller listens and resumes, as the session does. */
function plainAfter(raw: Socket, rest: Buffer): Reader {
  const r = new Reader(raw);
  r.buf = rest.toString('latin1');
  raw.resume();
  return r;
}

describe.each<SecureVersion>(['TLSv1.2', 'TLSv1.3'])('real TLS on the carrier, %s', (version) => {
  it('data passes both ways, small lines and 256 KiB that crosses many records and chunks', async () => {
    const p = await tlsPair(version);
    try {
      const fromClient = new Reader(p.st);
      const fromServer = new Reader(p.ct);
      p.ct.write('USER lab\r\n');
      await fromClient.until('USER lab\r\n');
      p.st.write('331 password\r\n');
      await fromServer.until('331 password\r\n');
      const big = Buffer.alloc(256 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = 0x41 + (i % 26);
      p.ct.write(big);
      p.ct.write('\r\nEND\r\n');
      const got = await fromClient.until('END\r\n');
      expect(got.length).toBe('USER lab\r\n'.length + big.length + '\r\nEND\r\n'.length);
      expect(got.slice(10, 10 + big.length) === big.toString('latin1')).toBe(true);
      p.st.write(big);
      p.st.write('\r\nEND\r\n');
      expect((await fromServer.until('END\r\n')).length).toBe('331 password\r\n'.length + big.length + 7);
      expect(p.raw.destroyed).toBe(false);
    } finally {
      closePair(p);
    }
  });

  it('CCC, the client\'s close_notify and "PASV" in one write: clear\'s callback gets exactly "PASV\\r\\n"; plain text both ways after', async () => {
    const p = await tlsPair(version);
    try {
      const fromServer = new Reader(p.ct);
      const serverRest = proxyCcc(p);
      await fromServer.until('200 CCC');
      const clientRest = clientCcc(p, 'PASV\r\n');
      const rest = await serverRest;
      expect(rest.toString('latin1')).toBe('PASV\r\n');
      // plain text both ways on the same TCP connection
      const atProxy = plainAfter(p.raw, Buffer.alloc(0));
      p.raw.write('227 Entering Passive Mode (127,0,0,1,200,10)\r\n');
      const atClient = plainAfter(p.rawC, await clientRest);
      expect(await atClient.until('\r\n')).toBe('227 Entering Passive Mode (127,0,0,1,200,10)\r\n');
      p.rawC.write('LIST\r\n');
      expect(await atProxy.until('\r\n')).toBe('LIST\r\n');
      expect(p.raw.destroyed).toBe(false);
      expect(p.rawC.destroyed).toBe(false);
    } finally {
      closePair(p);
    }
  });

  it('CCC, the close_notify first and "PASV" in a later write: the plain bytes come exactly once, nothing lost', async () => {
    const p = await tlsPair(version);
    try {
      const fromServer = new Reader(p.ct);
      const serverRest = proxyCcc(p);
      await fromServer.until('200 CCC');
      const clientRest = clientCcc(p, null);
      // the proxy saw the client's close_notify (its TLS stream ended) before the plain bytes were sent
      const rest = await serverRest;
      expect(rest.length).toBe(0);
      p.rawC.write('PASV\r\n');
      const atProxy = plainAfter(p.raw, rest);
      expect(await atProxy.until('\r\n')).toBe('PASV\r\n');
      p.raw.write('227 ok\r\n');
      const atClient = plainAfter(p.rawC, await clientRest);
      expect(await atClient.until('\r\n')).toBe('227 ok\r\n');
      await new Promise((r) => setTimeout(r, 20));
      expect(atProxy.buf).toBe('PASV\r\n');
    } finally {
      closePair(p);
    }
  });

  it('the TLS socket destroyed after clearing leaves the TCP socket open and usable', async () => {
    const p = await tlsPair(version);
    try {
      const fromServer = new Reader(p.ct);
      const serverRest = proxyCcc(p);
      await fromServer.until('200 CCC');
      const clientRest = clientCcc(p, 'NOOP\r\n');
      const rest = await serverRest;
      p.st.destroy();
      p.carrier.destroy();
      await new Promise((r) => setTimeout(r, 20));
      expect(p.raw.destroyed).toBe(false);
      const atProxy = plainAfter(p.raw, rest);
      const atClient = plainAfter(p.rawC, await clientRest);
      p.raw.write('200 NOOP ok\r\n');
      expect(await atClient.until('\r\n')).toBe('200 NOOP ok\r\n');
      p.rawC.write('QUIT\r\n');
      expect(await atProxy.until('QUIT\r\n')).toBe('NOOP\r\nQUIT\r\n');
    } finally {
      closePair(p);
    }
  });

  it('the TLS socket destroyed while it still carries TLS takes the TCP socket with it', async () => {
    const p = await tlsPair(version);
    try {
      const closed = once(p.rawC, 'close');
      p.st.destroy();
      await closed;
      expect(p.raw.destroyed).toBe(true);
    } finally {
      closePair(p);
    }
  });
});

// ---- the same through the daemon (unit rig: loopback, in-memory firewall, scripted plain server) ----

describe('CCC through the daemon: tls_client accept, tls_server none', () => {
  /** A client that logs in over TLS, says CCC, and ends its TLS (with `append` in the same write). */
  async function cccSession(append: string | null): Promise<{ plain: string; received: string[]; log: string }> {
    writeFileSync(`${dir}/proxy.pem`, cert);
    writeFileSync(`${dir}/proxy.key`, key, { mode: 0o600 });
    const rig = await daemonRig([], { policy: `tls_client accept\ntls_certificate "${dir}/proxy.pem"\ntls_key "${dir}/proxy.key"\n` });
    try {
      const rawC = netConnect({ port: rig.port, host: '127.0.0.2', localAddress: '127.0.0.4' });
      rawC.setNoDelay(true);
      rawC.on('error', () => undefined);
      await once(rawC, 'connect');
      const plain0 = new Reader(rawC);
      await plain0.until('220 ');
      rawC.write('AUTH TLS\r\n');
      await plain0.until('234 ');
      rawC.removeAllListeners('data');
      const cc = new TapCarrier(rawC);
      const ct = tlsConnect({ socket: cc as unknown as Socket, ca, servername: 'ftp.lab' });
      ct.on('error', () => undefined);
      await once(ct, 'secureConnect');
      const under = new Reader(ct);
      ct.write('USER lab\r\nPASS lab\r\n');
      await under.until('230 ');
      ct.write('CCC\r\n');
      await under.until('200 CCC');
      const rest = await clientCcc({ cc, ct }, append);
      const after = plainAfter(rawC, rest);
      if (append === null) {
        // the close_notify alone first: the proxy sees its TLS stream end before any plain byte (the
        // case 066f8aa fixed: it took that end for the client leaving)
        await new Promise((r) => setTimeout(r, 150));
        rawC.write('PASV\r\n');
      }
      await after.until('227 ');
      rawC.write('QUIT\r\n');
      await after.until('221 ');
      rawC.destroy();
      return { plain: after.buf, received: [...rig.server.received], log: rig.lines.join('\n') };
    } finally {
      await rig.close();
    }
  }

  it.each<[string, string | null]>([
    ['PASV in the same write as the close_notify', 'PASV\r\n'],
    ['PASV after the close_notify', null],
  ])('%s: the client gets 227 and 221 in plain text, the server got PASV and QUIT', async (_, append) => {
    const r = await cccSession(append);
    expect(r.plain).toMatch(/^227 Entering Passive Mode \(127,0,0,2,\d+,\d+\)\r\n221 /);
    expect(r.received.map((l) => l.trim())).toEqual(['USER lab', 'PASS lab', 'PASV', 'QUIT']);
    expect(r.log).toMatch(/client clears the control channel \(CCC\)/);
  });
});
