// The proxy's leg to the FTP server under TLS: the proxy is the TLS client. The control connection is
// upgraded after the server's 234 (explicit FTPS) or from its first byte (implicit, port 990); every data
// connection is a TLS client too (RFC 4217: the FTP client is the TLS client whoever connects) and
// offers the newest session the server gave on the control connection, because strict servers refuse a
// data connection that does not resume it (vsftpd: "522 SSL connection failed; session reuse required").
import { isIP, type Socket } from 'node:net';
import { connect, type ConnectionOptions, type SecureVersion, type TLSSocket } from 'node:tls';
import { SessionTracker } from './session-store.js';

export interface ServerLegOptions {
  /** The server's address (certificate check by IP SAN when no name is known). */
  host: string;
  port: number;
  /** A DNS name for SNI and the certificate check (the client's SNI, or the name dialled). */
  servername?: string;
  /** Check the server's certificate (tls_server_verify). */
  verify: boolean;
  /**
   * false: check the chain only; the caller checks the name later (the client's SNI is not known yet
   * when the proxy reaches the server first). Default true.
   */
  nameCheck?: boolean;
  /** Trust anchors (tls_server_ca); the system CAs when absent. */
  ca?: string | Buffer | (string | Buffer)[];
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  handshakeTimeoutMs?: number;
  /** What errors and logs say first, e.g. "session 12". */
  context?: string;
}

export interface TlsInfo {
  version: string;
  cipher: string;
  servername?: string;
  reused: boolean;
}

export class TlsLegError extends Error {
  override name = 'TlsLegError';
  constructor(
    message: string,
    /** OpenSSL's or Node's code (ERR_TLS_CERT_ALTNAME_INVALID, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...). */
    readonly code?: string,
  ) {
    super(message);
  }
}

export function tlsInfo(s: TLSSocket): TlsInfo {
  const name = (s as TLSSocket & { servername?: string | false }).servername;
  return {
    version: s.getProtocol() ?? '?',
    cipher: s.getCipher()?.name ?? '?',
    ...(typeof name === 'string' && name ? { servername: name } : {}),
    reused: s.isSessionReused(),
  };
}

/**
 * Run a TLS client handshake over an open TCP socket; settles on secureConnect or the first error.
 * `early` sees the socket before the handshake: with TLS 1.2 the 'session' event comes before
 * 'secureConnect', so a listener added after it misses the only session there is.
 */
function handshake(opts: ConnectionOptions, what: string, timeoutMs: number, early?: (s: TLSSocket) => void): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect(opts);
    early?.(s);
    const fail = (e: Error & { code?: string }) => {
      clearTimeout(t);
      s.destroy();
      reject(new TlsLegError(`${what}: TLS handshake failed: ${e.code ? `${e.code}: ` : ''}${e.message}`, e.code));
    };
    const t = setTimeout(() => fail(Object.assign(new Error(`no handshake within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })), timeoutMs);
    t.unref();
    s.once('error', fail);
    s.once('secureConnect', () => {
      clearTimeout(t);
      s.removeListener('error', fail);
      resolve(s);
    });
  });
}

export class ServerLeg {
  private constructor(
    readonly control: TLSSocket,
    readonly sessions: SessionTracker,
    private readonly opts: ServerLegOptions,
  ) {}

  private static base(o: ServerLegOptions): ConnectionOptions {
    const named = o.servername && !isIP(o.servername) ? o.servername : undefined;
    return {
      // host is what checkServerIdentity compares when there is no servername: the IP SAN case
      host: named ?? o.host,
      ...(named ? { servername: named } : {}),
      rejectUnauthorized: o.verify,
      ...(o.nameCheck === false ? { checkServerIdentity: () => undefined } : {}),
      ...(o.ca ? { ca: o.ca } : {}),
      ...(o.minVersion ? { minVersion: o.minVersion } : {}),
      ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
    };
  }

  private static what(o: ServerLegOptions, conn: string): string {
    return `${o.context ? `${o.context}: ` : ''}server ${o.host} port ${o.port} (${conn})`;
  }

  /**
   * Start TLS on the control connection (after 234, or at once for implicit FTPS). The caller must have
   * stopped reading the socket: the next bytes on it are the server's handshake.
   */
  static async startControl(socket: Socket, opts: ServerLegOptions): Promise<ServerLeg> {
    let tracker: SessionTracker | undefined;
    const s = await handshake({ ...ServerLeg.base(opts), socket }, ServerLeg.what(opts, 'control'), opts.handshakeTimeoutMs ?? 15_000, (t) => (tracker = new SessionTracker(t)));
    return new ServerLeg(s, tracker!, opts);
  }

  /**
   * TLS on a data connection (already connected, either direction), resuming the control session.
   * `resume`: true offers the newest session; false (tests: a strict server's refusal) none; a Buffer
   * that session (tests: which of several TLS 1.3 tickets a server accepts).
   * Resolves even when the server chose a full handshake (reused false): the server decides what that
   * means (vsftpd then closes it and answers 522), the caller logs it.
   */
  async connectData(socket: Socket, resume: boolean | Buffer = true): Promise<{ socket: TLSSocket; reused: boolean }> {
    // No waiting for a TLS 1.3 ticket: a server sends its tickets right after the handshake, before any
    // reply, and TLS records arrive in order; the 227/229 (or 150) read since came after them. A server
    // that sends none (pure-ftpd 1.0.50 under TLS 1.3) would only make every data connection wait.
    const session = Buffer.isBuffer(resume) ? resume : resume ? this.sessions.session : undefined;
    const s = await handshake(
      { ...ServerLeg.base(this.opts), socket, ...(session ? { session } : {}) },
      ServerLeg.what(this.opts, `data port ${socket.remotePort ?? '?'}`),
      this.opts.handshakeTimeoutMs ?? 15_000,
    );
    return { socket: s, reused: s.isSessionReused() };
  }

  get info(): TlsInfo {
    return tlsInfo(this.control);
  }
}
