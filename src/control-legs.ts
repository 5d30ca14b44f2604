// The two control connections of one session as streams the session reads and writes: each is its TCP
// socket, or the TLS stream on that socket after AUTH (and the socket again after CCC), or, once a
// pass-through session goes blind, a plain pipe between the two sockets. The transport seam: the state
// machine decides when a leg changes, the session asks, this file swaps the streams.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { ClientStart, SessionTls } from './session-tls.js';
import { TlsCarrier } from './tls/carrier.js';

export interface LegEvents {
  clientData(chunk: Buffer): void;
  serverData(chunk: Buffer): void;
  /** A TLS stream of that leg failed or ended (the sockets' own events stay the session's). */
  clientError(e: Error): void;
  serverError(e: Error): void;
  clientEnd(): void;
  serverEnd(): void;
  /** A full stream drained: its reader may go on. */
  drain(): void;
}

export class ControlLegs {
  /** What each leg is read from and written to now. */
  clientIo: Duplex;
  serverIo: Duplex | null = null;
  /** A leg is changing hands: its lines read before the change must not run after it. */
  clientSwitching = false;
  serverSwitching = false;
  /** tls_client passthrough after the server's 234: bytes relayed untouched. */
  blind = false;
  private carrier: TlsCarrier | null = null;
  /** CCC in progress on the client leg. */
  private clearing = false;
  private readonly onClient = (chunk: Buffer): void => this.ev.clientData(chunk);
  private readonly onServer = (chunk: Buffer): void => this.ev.serverData(chunk);

  constructor(
    readonly client: Socket,
    private readonly ev: LegEvents,
  ) {
    this.clientIo = client;
  }

  /** Start reading both legs (after implicit TLS, if any). */
  attach(up: Socket): void {
    this.serverIo ??= up;
    this.listenClient(this.clientIo);
    this.listenServer(this.serverIo);
  }

  private listenClient(io: Duplex): void {
    io.on('data', this.onClient);
    io.on('drain', () => this.ev.drain());
    if (io === this.client) return;
    io.on('error', (e: Error) => this.ev.clientError(e));
    io.on('end', () => {
      // During CCC the TLS stream's end is the client's close_notify, not the client leaving.
      if (io === this.clientIo && !this.clearing) this.ev.clientEnd();
    });
  }

  private listenServer(io: Duplex): void {
    io.on('data', this.onServer);
    io.on('drain', () => this.ev.drain());
    if (!('encrypted' in io)) return;
    io.on('error', (e: Error) => this.ev.serverError(e));
    io.on('end', () => this.ev.serverEnd());
  }

  /** Read a leg only while what it sends can go somewhere (Session.flow decides). */
  flow(readClient: boolean, readServer: boolean): void {
    if (this.blind) return;
    if (!this.clientSwitching) {
      if (readClient) this.clientIo.resume();
      else this.clientIo.pause();
    }
    if (this.serverIo && !this.serverSwitching) {
      if (readServer) this.serverIo.resume();
      else this.serverIo.pause();
    }
  }

  /** Stop reading a leg in the clear: TLS is about to start on it. */
  hold(side: 'client' | 'server', up: Socket | null): void {
    if (side === 'client') {
      this.clientSwitching = true;
      this.client.removeListener('data', this.onClient);
      this.client.pause();
    } else if (up) {
      this.serverSwitching = true;
      up.removeListener('data', this.onServer);
      up.pause();
    }
  }

  /** TLS to the server on its socket (after its 234, or at once on port 990); reading resumes on it. */
  async startServer(tls: SessionTls, up: Socket, listen = true): Promise<void> {
    this.serverSwitching = true;
    try {
      const t = await tls.startServer(up);
      this.serverIo = t;
      if (listen) this.listenServer(t);
    } finally {
      this.serverSwitching = false;
    }
  }

  /** TLS with the client on its socket (after the proxy's 234, or at once on port 990). */
  async startClient(tls: SessionTls, listen = true): Promise<ClientStart> {
    this.clientSwitching = true;
    try {
      this.carrier = new TlsCarrier(this.client);
      const r = await tls.startClient(this.carrier);
      this.clientIo = r.socket;
      if (listen && !r.refusal) this.listenClient(r.socket);
      return r;
    } finally {
      this.clientSwitching = false;
    }
  }

  /**
   * CCC: close_notify after the 200 (already written), then plain text on the same socket. `done` gets
   * the first plain bytes, if any came with the end of the TLS stream.
   */
  clearClient(done: (rest: Buffer) => void): void {
    const t = this.clientIo as TLSSocket;
    const carrier = this.carrier!;
    this.clearing = true;
    t.removeListener('data', this.onClient);
    t.on('data', () => undefined); // keep reading, so that the client's close_notify is seen
    t.once('end', () => carrier.cleared());
    carrier.clear((rest) => {
      this.clearing = false;
      this.clientIo = this.client;
      this.carrier = null;
      this.client.on('data', this.onClient);
      done(rest);
    });
    t.end();
  }

  /** Pass-through: from now on the two sockets are piped, with what was read past the last line first. */
  goBlind(up: Socket, fromClient: Buffer, fromServer: Buffer, read: (side: 'client' | 'server') => void): void {
    this.blind = true;
    this.client.removeListener('data', this.onClient);
    up.removeListener('data', this.onServer);
    if (fromClient.length) up.write(fromClient);
    if (fromServer.length) this.client.write(fromServer);
    this.client.on('data', () => read('client'));
    up.on('data', () => read('server'));
    this.client.pipe(up, { end: true });
    up.pipe(this.client, { end: true });
  }

  /**
   * The session ends: what is queued goes out (a final reply; under TLS its close_notify) before the FIN,
   * and everything is destroyed after `graceMs` in case the peer never reads. A socket under TLS is the
   * TLS stream's to end.
   */
  close(up: Socket | null, graceMs: number): void {
    const streams = new Set<Duplex>([this.clientIo, this.client]);
    if (this.serverIo) streams.add(this.serverIo);
    if (up) streams.add(up);
    for (const s of streams) {
      s.removeAllListeners('data');
      s.on('error', () => undefined);
      if (s === this.clientIo || s === this.serverIo || this.blind) s.end();
      setTimeout(() => s.destroy(), graceMs).unref();
    }
  }
}
