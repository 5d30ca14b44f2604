// TLS sessions kept for resumption, one store per FTP session and leg.
//
// Strict FTPS servers (vsftpd's require_ssl_reuse, proftpd's mod_tls, FileZilla Server) refuse a data
// connection whose TLS session is not a resumption of the control connection's session. So:
//  - towards the server (the proxy is the TLS client), remember the newest session the server handed out
//    on the control connection, and offer it on every data connection;
//  - towards the client (the proxy is the TLS server), keep the sessions the control handshake created,
//    so the client's data connection can resume them by session id (TLS 1.2 without tickets).
import type { TLSSocket } from 'node:tls';

/**
 * The newest session a TLS server gave one client connection. With TLS 1.3 the tickets come after the
 * handshake, often several (OpenSSL sends two): each 'session' event replaces the one before, since a
 * server may accept only its latest ticket.
 */
export class SessionTracker {
  private newest: Buffer | undefined;
  private n = 0;
  private waiters: (() => void)[] = [];

  constructor(socket: TLSSocket) {
    this.follow(socket);
  }

  /** Also take sessions from another connection of the same chain (a resumed data connection's tickets). */
  follow(socket: TLSSocket): void {
    socket.on('session', (s: Buffer) => {
      this.newest = s;
      this.n++;
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
  }

  /** The session to resume, if the server gave one. */
  get session(): Buffer | undefined {
    return this.newest;
  }

  /** How many sessions (tickets) have been seen. */
  get received(): number {
    return this.n;
  }

  /**
   * The newest session, waiting up to ms for a first one: a TLS 1.3 ticket is read with the first bytes
   * after the handshake, which may not have arrived yet when a data connection opens.
   */
  wait(ms: number): Promise<Buffer | undefined> {
    if (this.newest) return Promise.resolve(this.newest);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((f) => f !== done);
        resolve(this.newest);
      }, ms);
      t.unref();
      const done = () => {
        clearTimeout(t);
        resolve(this.newest);
      };
      this.waiters.push(done);
    });
  }
}

/**
 * Server-side sessions by id, for a tls.Server's 'newSession'/'resumeSession' events. Node runs OpenSSL's
 * server cache with SSL_SESS_CACHE_NO_INTERNAL, so without these handlers a client that resumes by
 * session id (TLS 1.2 without tickets, or TLS 1.3 stateful tickets) gets a full handshake instead.
 * Bounded: the oldest entry goes first.
 */
export class SessionIdCache {
  private readonly map = new Map<string, Buffer>();

  constructor(private readonly max = 32) {}

  get size(): number {
    return this.map.size;
  }

  set(id: Buffer, data: Buffer): void {
    const k = id.toString('hex');
    this.map.delete(k);
    this.map.set(k, data);
    while (this.map.size > this.max) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
    }
  }

  get(id: Buffer): Buffer | undefined {
    return this.map.get(id.toString('hex'));
  }

  clear(): void {
    this.map.clear();
  }
}
