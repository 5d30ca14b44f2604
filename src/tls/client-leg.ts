// The proxy's leg to the FTP client under TLS: the proxy is the TLS server, on the control connection
// (after its own 234, or from the first byte on 990) and on every data connection (RFC 4217: the FTP
// client is the TLS client, whoever connects). Clients resume their control session on the data
// connection (curl, Python's ftplib, lftp, FileZilla all do); to let them, the control and data
// handshakes of one FTP session share one SecureContext (hence one set of ticket keys) and one session
// id cache (TLS 1.2 without tickets, TLS 1.3 stateful tickets).
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { createSecureContext, Server, TLSSocket, type SecureContext, type SecureContextOptions, type SecureVersion } from 'node:tls';
import { SessionIdCache } from './session-store.js';
import { TlsLegError } from './server-leg.js';

/** A TCP socket, or the carrier a control connection's TLS runs on (src/tls/carrier.ts, for CCC). */
export type Carried = Duplex & { remoteAddress?: string | undefined; remotePort?: number | undefined };

export interface ClientLegOptions {
  /**
   * A ready context (a configured or minted certificate); else one is made from `credentials`, with
   * minVersion/maxVersion and fresh ticket keys. A given context keeps its own versions and ticket keys:
   * shared by several FTP sessions, a ticket of one resumes in another (see docs/tls-notes.md).
   */
  secureContext?: SecureContext;
  credentials?: SecureContextOptions;
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  handshakeTimeoutMs?: number;
  /** What errors say first, e.g. "session 12". */
  context?: string;
  /** After a full TLS 1.3 data handshake, hold the data this long (ms) first; see acceptData(). */
  ticketSettleMs?: number;
  /**
   * Picks the context by the client's SNI name (a certificate minted for that name). Whatever it
   * returns for the control handshake should serve the data handshakes too: the tickets are the
   * returned context's.
   */
  sniCallback?: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
}

export class ClientLeg {
  private readonly ctx: SecureContext;
  /**
   * Never listens: it only owns the session events. Node asks a server-side TLSSocket's `server` for
   * 'newSession'/'resumeSession' listeners, and without them it never consults an external cache.
   */
  private readonly events = new Server();
  readonly cache = new SessionIdCache();
  private readonly sockets = new Set<TLSSocket>();

  constructor(private readonly opts: ClientLegOptions) {
    if (opts.secureContext) {
      this.ctx = opts.secureContext;
    } else {
      // Fresh ticket keys per leg: a ticket from another FTP session cannot resume here.
      this.ctx = createSecureContext({
        ...opts.credentials,
        ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
        ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
        ticketKeys: randomBytes(48),
      } as SecureContextOptions);
    }
    this.events.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
      this.cache.set(id, data);
      done();
    });
    this.events.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
      done(null, this.cache.get(id) ?? null);
    });
  }

  private accept(socket: Carried, conn: string, head?: Buffer): Promise<TLSSocket> {
    const what = `${this.opts.context ? `${this.opts.context}: ` : ''}client ${socket.remoteAddress ?? '?'} port ${socket.remotePort ?? '?'} (${conn})`;
    // Bytes read past the AUTH line (a client that sent its ClientHello at once) go back first.
    if (head?.length) socket.unshift(head);
    return new Promise((resolve, reject) => {
      const s = new TLSSocket(socket, {
        isServer: true,
        server: this.events,
        secureContext: this.ctx,
        requestCert: false,
        rejectUnauthorized: false,
        ...(this.opts.sniCallback ? { SNICallback: this.opts.sniCallback } : {}),
      });
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
      const ms = this.opts.handshakeTimeoutMs ?? 15_000;
      const fail = (e: Error & { code?: string }) => {
        clearTimeout(t);
        s.destroy();
        reject(new TlsLegError(`${what}: TLS handshake failed: ${e.code ? `${e.code}: ` : ''}${e.message}`, e.code));
      };
      const t = setTimeout(() => fail(Object.assign(new Error(`no handshake within ${ms / 1000} s`), { code: 'ETIMEDOUT' })), ms);
      t.unref();
      s.once('error', fail);
      // A server-side TLSSocket made by hand reports its finished handshake as 'secure'.
      s.once('secure', () => {
        clearTimeout(t);
        s.removeListener('error', fail);
        resolve(s);
      });
      socket.resume();
    });
  }

  /** TLS on the control connection, after the proxy sent 234 (or at once for implicit FTPS). */
  startControl(socket: Carried, head?: Buffer): Promise<TLSSocket> {
    return this.accept(socket, 'control', head);
  }

  /**
   * TLS on a data connection. `reused` says whether the client resumed a session of this leg; a caller
   * that wants vsftpd's strictness refuses the connection when it is false.
   */
  async acceptData(socket: Carried & { localPort?: number }): Promise<{ socket: TLSSocket; reused: boolean }> {
    const s = await this.accept(socket, `data port ${socket.localPort ?? '?'}`);
    const reused = s.isSessionReused();
    // After a full TLS 1.3 handshake Node sends two session tickets (none after a resumed one). When a
    // small file and close_notify follow them at once, Python's ssl (OpenSSL 3.0 client) fails the
    // data connection's unwrap() with SHUTDOWN_WHILE_IN_INIT, a quarter of the time in the lab; a short
    // pause before the first data byte lets the client take the tickets on their own (0 failures).
    const settle = this.opts.ticketSettleMs ?? 50;
    if (!reused && settle > 0 && s.getProtocol() === 'TLSv1.3') await new Promise((r) => setTimeout(r, settle));
    return { socket: s, reused };
  }

  /** Forget the sessions and drop every TLS socket of this leg still open. */
  close(): void {
    this.cache.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}
