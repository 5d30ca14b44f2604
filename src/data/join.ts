// A data connection the proxy joins itself (data_mode passive/active, when the client asked for the other
// mode): two TCP connections, one to each peer, spliced in userland. Kernel pinholes cannot do this:
// client-PORT with server-PASV leaves two listeners and nobody to connect, client-PASV with server-PORT
// two connectors and nobody to listen. Keep mode never comes here; its bytes never pass the proxy.
//
//   connect(): both peers listen (client PORT, server 227); the proxy connects to each, outward only.
//   listen():  both peers connect (client PASV, server PORT); the proxy listens on one port per side and
//              takes one connection from the expected peer on each (its firewall pinholes admit exactly
//              that one); the listeners close after it.
import { createSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { canonical, type Family } from '../net/address.js';

export interface JoinStats {
  /** Bytes from the server to the client, and the other way. */
  toClient: number;
  toServer: number;
  error?: string;
}

export interface ConnectEnd {
  host: string;
  port: number;
  localAddress?: string;
}

export interface ListenEnd {
  /** Local address to listen on. */
  address: string;
  /** The only peer address accepted. */
  peer: string;
}

/** The local address this host uses towards `peer` (a UDP connect sends nothing; it only routes). */
export function localAddressToward(peer: string, family: Family): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket(family === 6 ? 'udp6' : 'udp4');
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.connect(9, peer, () => {
      try {
        resolve(canonical(s.address().address));
      } catch (e) {
        reject(e as Error);
      } finally {
        s.close();
      }
    });
  });
}

/**
 * TLS on a leg of the join (PROT P): what the proxy relays is the plaintext of the stream these give,
 * once both legs' TCP connections are up. A rejection closes the join.
 */
export interface JoinWrap {
  client?: (s: Socket) => Promise<Duplex>;
  server?: (s: Socket) => Promise<Duplex>;
}

/** After the control session ended, a joined connection this long without a byte is done. */
const FINISH_IDLE_MS = 5000;

export class DataJoin {
  private client: Socket | null = null;
  private server: Socket | null = null;
  private readonly listeners: Server[] = [];
  /** Every socket this join holds, from the moment it exists: close() destroys them all. */
  private readonly sockets = new Set<Socket>();
  private timer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private lastActivity = Date.now();
  private closed = false;
  private readonly stats: JoinStats = { toClient: 0, toServer: 0 };
  private endHandler: ((s: JoinStats) => void) | null = null;

  /** `idleMs`: a leg with no byte either way for this long closes the join (0 = none). */
  private constructor(
    private idleMs: number,
    private readonly wrap: JoinWrap = {},
  ) {}

  /** Called once when both legs are closed (or the join is given up). */
  onEnd(f: (s: JoinStats) => void): void {
    this.endHandler = f;
  }

  get ended(): boolean {
    return this.closed;
  }

  /** Whether any byte has passed (a join nobody used may be replaced). */
  get carried(): boolean {
    return this.stats.toClient + this.stats.toServer > 0;
  }

  /** Connect to the server's passive port and to the client's active port; resolves when both are up. */
  static async connect(server: ConnectEnd, client: ConnectEnd, timeoutMs: number, idleMs = 0, wrap?: JoinWrap): Promise<DataJoin> {
    const j = new DataJoin(idleMs, wrap);
    try {
      // Each socket is the join's as soon as it exists: when one leg fails, close() takes the other.
      const [s, c] = await Promise.all([dial(server, timeoutMs, 'server', j.sockets), dial(client, timeoutMs, 'client', j.sockets)].map((p) => p.then((sock) => j.keep(sock))));
      j.server = s!;
      j.client = c!;
      j.splice();
      return j;
    } catch (e) {
      j.close((e as Error).message);
      throw e;
    }
  }

  /**
   * Listen on both sides (ports chosen by the kernel); the legs are spliced when both peers have
   * connected. Gives up after timeoutMs without both.
   */
  static async listen(serverSide: ListenEnd, clientSide: ListenEnd, timeoutMs: number, idleMs = 0, wrap?: JoinWrap): Promise<{ join: DataJoin; serverPort: number; clientPort: number }> {
    const j = new DataJoin(idleMs, wrap);
    try {
      const [serverPort, clientPort] = await Promise.all([
        j.listenOne(serverSide, (s) => (j.server = s)),
        j.listenOne(clientSide, (s) => (j.client = s)),
      ]);
      j.timer = setTimeout(() => j.close(`no data connection within ${timeoutMs / 1000} s`), timeoutMs);
      j.timer.unref();
      return { join: j, serverPort, clientPort };
    } catch (e) {
      j.close((e as Error).message);
      throw e;
    }
  }

  /**
   * PROT P: one peer connects (to the port returned, behind a local pinhole), and then the proxy dials
   * the other: client PASV -> listen for the client, dial the server's passive port; client PORT ->
   * listen for the server, dial the client's port.
   */
  static async listenThenDial(
    side: 'client' | 'server',
    listen: ListenEnd,
    dialEnd: ConnectEnd,
    timeoutMs: number,
    idleMs: number,
    wrap: JoinWrap,
  ): Promise<{ join: DataJoin; port: number }> {
    const j = new DataJoin(idleMs, wrap);
    const other = side === 'client' ? 'server' : 'client';
    try {
      const port = await j.listenOne(
        listen,
        (s) => {
          if (side === 'client') j.client = s;
          else j.server = s;
        },
        () => {
          dial(dialEnd, timeoutMs, other, j.sockets)
            .then((s) => {
              const kept = j.keep(s);
              if (other === 'client') j.client = kept;
              else j.server = kept;
              j.splice();
            })
            .catch((e: Error) => j.close(e.message));
        },
      );
      j.timer = setTimeout(() => j.close(`no data connection within ${timeoutMs / 1000} s`), timeoutMs);
      j.timer.unref();
      return { join: j, port };
    } catch (e) {
      j.close((e as Error).message);
      throw e;
    }
  }

  private keep(s: Socket): Socket {
    this.sockets.add(s);
    if (this.closed) {
      s.destroy();
      throw new Error('join closed');
    }
    s.on('error', (e) => this.close(e.message));
    s.on('close', () => {
      this.sockets.delete(s);
      // Both legs done: the join is over (a leg alone closing leaves the other to finish its half).
      if (this.sockets.size === 0 && this.client && this.server) this.close();
    });
    return s;
  }

  /**
   * The idle limit of a spliced join: no byte either way for idleMs closes it (a peer that went away
   * without a FIN must not hold two descriptors forever). Re-armed when it fires, not on every chunk.
   */
  private armIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.idleMs <= 0 || this.closed) return;
    const check = (): void => {
      const quiet = Date.now() - this.lastActivity;
      if (quiet >= this.idleMs) this.close(`no data for ${Math.round(this.idleMs / 1000)} s`);
      else this.idleTimer = setTimeout(check, this.idleMs - quiet).unref();
    };
    this.idleTimer = setTimeout(check, this.idleMs).unref();
  }

  private listenOne(end: ListenEnd, take: (s: Socket) => void, then?: () => void): Promise<number> {
    return new Promise((resolve, reject) => {
      const srv = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
        // The pinhole admits only this peer; anything else here is not ours to relay.
        if (this.closed || canonical(s.remoteAddress ?? '') !== end.peer) {
          s.destroy();
          return;
        }
        srv.close(); // one connection per side: the listener goes at once
        take(this.keep(s));
        if (then) then();
        else if (this.client && this.server) this.splice();
      });
      this.listeners.push(srv);
      // Before listening: the join fails; after (an accept error): the join ends. Never unhandled.
      srv.on('error', (e) => {
        if (srv.listening) this.close(e.message);
        else reject(e);
      });
      srv.listen({ host: end.address, port: 0, backlog: 1 }, () => resolve((srv.address() as { port: number }).port));
    });
  }

  private splice(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.wrap.client && !this.wrap.server) {
      this.pipe(this.client!, this.server!);
      return;
    }
    // The handshakes may take a while (vsftpd answers its ClientHello only after RETR/STOR): bounded.
    const plain = (s: Socket): Promise<Duplex> => Promise.resolve(s);
    Promise.all([(this.wrap.client ?? plain)(this.client!), (this.wrap.server ?? plain)(this.server!)]).then(
      ([c, s]) => {
        if (this.closed) {
          c.destroy();
          s.destroy();
          return;
        }
        for (const t of [c, s]) t.on('error', (e: Error) => this.close(e.message));
        this.pipe(c, s);
      },
      (e: Error) => this.close(e.message),
    );
  }

  private pipe(c: Duplex, s: Duplex): void {
    this.lastActivity = Date.now();
    c.on('data', (d: Buffer) => {
      this.stats.toServer += d.length;
      this.lastActivity = Date.now();
    });
    s.on('data', (d: Buffer) => {
      this.stats.toClient += d.length;
      this.lastActivity = Date.now();
    });
    this.armIdle();
    // pipe() ends the other side when one side ends (half-close), and applies backpressure both ways.
    s.pipe(c);
    c.pipe(s);
    s.resume();
    c.resume();
  }

  /**
   * The control session ended: a join that never carried a byte goes now; one in the middle of a
   * transfer may finish (the 226 can reach the client before the last bytes do), for at most graceMs.
   */
  finish(graceMs: number): void {
    if (this.closed) return;
    if (!this.carried) {
      this.close();
      return;
    }
    // The tail of a transfer moves or the join goes: no waiting out the whole grace for a silent peer.
    this.idleMs = Math.min(this.idleMs || FINISH_IDLE_MS, FINISH_IDLE_MS);
    if (this.client && this.server) this.armIdle();
    for (const l of this.listeners) l.close();
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.close('the control session ended'), graceMs);
    this.timer.unref();
  }

  /** Close everything: listeners, both legs. Idempotent. */
  close(error?: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const l of this.listeners) l.close();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (error) this.stats.error = error;
    this.endHandler?.(this.stats);
  }
}

/** Connect to one peer; the socket goes into `track` at once, so whoever owns the set can close it. */
function dial(end: ConnectEnd, timeoutMs: number, what: string, track: Set<Socket>): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: end.host, port: end.port, allowHalfOpen: true, ...(end.localAddress ? { localAddress: end.localAddress } : {}) });
    track.add(s);
    s.pause();
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`${what} ${end.host} port ${end.port}: no answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      reject(new Error(`${what} ${end.host} port ${end.port}: ${e.code ?? e.message}`));
    });
  });
}
