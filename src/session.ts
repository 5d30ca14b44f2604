// One FTP session: the client's control connection, the proxy's connection to the server, the timers,
// and the firewall calls. The protocol decisions are FtpControl's; this file carries out its actions.
import { connect, type Socket } from 'node:net';
import { type Action, FtpControl, type Negotiation, type NegotiationResult } from './ftp/control.js';
import { LineSplitter } from './ftp/lines.js';
import {
  activePinhole,
  describePinhole,
  type FirewallBackend,
  type Owner,
  passivePinhole,
  PinholeConflict,
  randomProxyPort,
  type SessionEnds,
} from './firewall/backend.js';
import { type Level, LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE } from './levels.js';
import type { Fields, Log } from './log.js';
import { canonical, type Family, familyOf } from './net/address.js';
import { type Endpoint, rdomains } from './net/original-dst.js';

/** OpenBSD's CONNECT_TIMEOUT: the server must connect and say something within this many seconds. */
export const BANNER_TIMEOUT = 30;
/** Attempts at a free proxy port before a negotiation is refused. */
const PORT_ATTEMPTS = 8;
/** Stop reading a client that has this many commands outstanding, until replies catch up. */
const PIPELINE_PAUSE = 64;

export interface SessionOptions {
  id: number;
  pid: number;
  firewall: FirewallBackend;
  log: Log;
  /** -t, seconds; 0 = none. */
  idleTimeout: number;
  anonymousOnly: boolean;
  port20: boolean;
  sourceAddress?: string;
  /** Where the client was going (OS). */
  original: Endpoint;
  /** Where the proxy connects (S): OS, or the -R server. */
  server: Endpoint;
  /** "#id FTP session n/max started": the counts at start. */
  counts: () => { count: number; max: number };
  onEnd: (s: Session) => void;
  /** For tests: fixed random source. */
  random?: () => number;
  bannerTimeout?: number;
}

type EndReason = string;

export class Session {
  readonly id: number;
  private readonly owner: Owner;
  private readonly clientAddress: string;
  private upstream: Socket | null = null;
  private control: FtpControl | null = null;
  private readonly clientLines = new LineSplitter();
  private readonly serverLines = new LineSplitter();
  private lastClientRead = Date.now();
  private lastServerRead = Date.now();
  private serverSpoke = false;
  private bannerTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Firewall calls of this session, one at a time, in order. */
  private fw: Promise<unknown> = Promise.resolve();
  private ending: Promise<void> | null = null;
  private hasPinholes = false;
  /** The pinhole the last negotiation installed, for the JSON log. */
  private lastPinhole = '';
  /** OpenBSD routing domains for pf rules; null elsewhere. */
  private readonly rdomains: { client: number; proxy: number } | null;

  constructor(
    private readonly client: Socket,
    private readonly o: SessionOptions,
  ) {
    this.id = o.id;
    this.owner = { pid: o.pid, session: o.id };
    this.clientAddress = canonical(client.remoteAddress ?? '');
    this.rdomains = process.platform === 'openbsd' ? rdomains(client) : null;
  }

  /** What every JSON log line of this session carries. */
  private fields(event: string): Fields {
    return { event, session: this.id, client: this.clientAddress, server: this.o.server.address };
  }

  /** A log line of this session: "#id message" in text, the fields too in JSON. */
  private ev(level: Level, event: string, message: string, extra: Fields = {}): void {
    this.o.log.log(level, `#${this.id} ${message}`, { ...this.fields(event), ...extra });
  }

  get ended(): boolean {
    return this.ending !== null;
  }

  /** Whether the firewall holds pinholes of this session. */
  get holdsPinholes(): boolean {
    return this.hasPinholes && !this.ended;
  }

  start(): void {
    const { log } = this.o;
    this.client.on('error', (e) => this.onClientError(e));
    this.client.on('end', () => {
      if (this.ended) return;
      this.ev(LOG_INFO, 'client-close', 'client close');
      void this.end('client close');
    });
    this.client.on('close', () => void this.end('client gone'));

    const up = connect({
      host: this.o.server.address,
      port: this.o.server.port,
      ...(this.o.sourceAddress ? { localAddress: this.o.sourceAddress } : {}),
    });
    this.upstream = up;
    up.setNoDelay(true);
    this.client.setNoDelay(true);
    this.bannerTimer = setTimeout(() => {
      this.ev(LOG_NOTICE, 'server-timeout', 'server timeout');
      this.refuse('421 Service not available: the server did not answer, closing control connection.\r\n', 'server timeout');
    }, (this.o.bannerTimeout ?? BANNER_TIMEOUT) * 1000);
    up.once('connect', () => this.onConnected(up));
    up.on('error', (e) => this.onServerError(e));
    up.on('end', () => {
      if (this.ended) return;
      this.ev(LOG_INFO, 'server-close', 'server close');
      void this.end('server close');
    });
    up.on('close', () => void this.end('server gone'));
  }

  private onConnected(up: Socket): void {
    if (this.ended) return;
    const proxy = canonical(up.localAddress ?? '');
    const serverFamily = familyOf(canonical(up.remoteAddress ?? this.o.server.address)) ?? 4;
    const clientFamily: Family = familyOf(this.o.original.address) ?? 4;
    const { count, max } = this.o.counts();
    this.ev(LOG_INFO, 'session-start', `FTP session ${count}/${max} started: client ${this.clientAddress} to server ${this.o.server.address} via proxy ${proxy}`, {
      proxy,
      originalServer: this.o.original.address,
      sessions: count,
    });
    up.setKeepAlive(true);
    this.client.setKeepAlive(true);
    this.control = new FtpControl(
      this.id,
      {
        client: this.clientAddress,
        originalServer: this.o.original.address,
        server: canonical(this.o.server.address),
        proxy,
        clientFamily,
        serverFamily,
      },
      { anonymousOnly: this.o.anonymousOnly, debug: this.o.log.enabled(LOG_DEBUG), firewallName: this.o.firewall.name },
    );
    up.on('data', (chunk: Buffer) => this.onServerData(chunk));
    this.client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    this.client.resume();
    this.armIdle();
  }

  private onClientData(chunk: Buffer): void {
    this.lastClientRead = Date.now();
    for (const ev of this.clientLines.push(chunk)) {
      if (!this.control || this.ended) return;
      this.run(ev.kind === 'line' ? this.control.clientLine(ev.line) : this.control.lineError('client', ev.error));
    }
    this.pauseClientIfNeeded();
  }

  private pauseClientIfNeeded(): void {
    if (this.control && (this.control.clientBlocked || this.control.pendingCommands >= PIPELINE_PAUSE)) this.client.pause();
  }

  private onServerData(chunk: Buffer): void {
    this.lastServerRead = Date.now();
    if (!this.serverSpoke) {
      this.serverSpoke = true;
      if (this.bannerTimer) clearTimeout(this.bannerTimer);
      this.bannerTimer = null;
    }
    for (const ev of this.serverLines.push(chunk)) {
      if (!this.control || this.ended) return;
      this.run(ev.kind === 'line' ? this.control.serverLine(ev.line) : this.control.lineError('server', ev.error));
    }
    if (this.control?.serverBlocked) this.upstream?.pause();
    // Replies drained the client's backlog of commands: read it again.
    if (this.control && this.client.isPaused() && !this.control.clientBlocked && this.control.pendingCommands < PIPELINE_PAUSE) this.client.resume();
  }

  private run(actions: Action[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'toServer':
          if (this.upstream && !this.upstream.write(a.data)) this.backpressure(this.client, this.upstream);
          break;
        case 'toClient':
          if (!this.client.write(a.data) && this.upstream) this.backpressure(this.upstream, this.client);
          break;
        case 'log':
          this.o.log.log(a.level, a.message, {
            ...this.fields(a.event),
            ...a.fields,
            ...((a.event === 'active' || a.event === 'passive') && this.lastPinhole ? { pinhole: this.lastPinhole } : {}),
          });
          break;
        case 'negotiate':
          this.negotiate(a.id, a.negotiation);
          break;
        case 'close':
          void this.end(a.reason);
          break;
      }
    }
  }

  /** A peer that does not read its replies stops us reading from the other side. */
  private backpressure(reader: Socket, writer: Socket): void {
    reader.pause();
    writer.once('drain', () => {
      if (!this.ended && !this.blockedFor(reader)) reader.resume();
    });
  }

  private blockedFor(reader: Socket): boolean {
    if (reader === this.client) return !!this.control && (this.control.clientBlocked || this.control.pendingCommands >= PIPELINE_PAUSE);
    return !!this.control?.serverBlocked;
  }

  private negotiate(id: number, n: Negotiation): void {
    const ends: SessionEnds = {
      family: familyOf(this.o.original.address) ?? 4,
      client: this.clientAddress,
      originalServer: this.o.original.address,
      server: canonical(this.o.server.address),
      proxy: canonical(this.upstream?.localAddress ?? ''),
    };
    const attempt = async (): Promise<NegotiationResult> => {
      let last = '';
      for (let i = 0; i < PORT_ATTEMPTS; i++) {
        const pp = randomProxyPort(this.o.random);
        const pinhole =
          n.kind === 'passive'
            ? passivePinhole(ends, n.serverPort, pp)
            : activePinhole(ends, n.clientPort, pp, this.o.port20 && n.command === 'PORT');
        if (this.rdomains) pinhole.rdomains = this.rdomains;
        try {
          await this.o.firewall.replace(this.owner, [pinhole]);
          this.hasPinholes = true;
          this.lastPinhole = describePinhole(pinhole);
          return { ok: true, proxyPort: pp };
        } catch (e) {
          last = e instanceof Error ? e.message : String(e);
          if (!(e instanceof PinholeConflict)) return { ok: false, error: last };
        }
      }
      return { ok: false, error: `no free proxy port after ${PORT_ATTEMPTS} attempts (${last})` };
    };
    const job = this.fw.then(attempt);
    this.fw = job.catch(() => undefined);
    void job.then((result) => {
      if (this.ended || !this.control) return;
      this.run(this.control.negotiationDone(id, result));
      if (!this.control.clientBlocked && this.control.pendingCommands < PIPELINE_PAUSE) this.client.resume();
      if (!this.control.serverBlocked) this.upstream?.resume();
    });
  }

  private armIdle(): void {
    const t = this.o.idleTimeout * 1000;
    if (t <= 0) return;
    const check = (): void => {
      if (this.ended) return;
      const now = Date.now();
      if (now - this.lastClientRead >= t) {
        this.ev(LOG_ERR, 'client-timeout', 'client timeout');
        void this.end('client timeout');
        return;
      }
      if (now - this.lastServerRead >= t) {
        this.ev(LOG_NOTICE, 'server-timeout', 'server timeout');
        void this.end('server timeout');
        return;
      }
      // Re-armed only when it fires, not on every read: cheap with thousands of sessions.
      this.idleTimer = setTimeout(check, t - (now - Math.min(this.lastClientRead, this.lastServerRead)));
    };
    this.idleTimer = setTimeout(check, t);
  }

  private onClientError(e: Error): void {
    if (this.ended) return;
    this.ev(LOG_ERR, 'client-reset', 'client reset connection');
    this.ev(LOG_DEBUG, 'client-error', `client error: ${e.message}`);
    void this.end('client reset connection');
  }

  private onServerError(e: NodeJS.ErrnoException): void {
    if (this.ended) return;
    const { log } = this.o;
    if (!this.control) {
      if (e.syscall === 'bind') {
        this.ev(LOG_CRIT, 'bind-failed', `cannot bind fixed proxy address: ${e.message}`);
      } else if (e.code === 'ECONNREFUSED') {
        this.ev(LOG_ERR, 'server-refused', 'server refused connection');
      } else {
        this.ev(LOG_CRIT, 'server-unreachable', `proxy cannot connect to server ${this.o.server.address}: ${e.code ?? e.message}`);
      }
      this.refuse('421 Service not available: cannot connect to the server, closing control connection.\r\n', 'connect failed');
      return;
    }
    this.ev(LOG_ERR, 'server-reset', 'server reset connection');
    void this.end('server reset connection');
  }

  /** Tell the client why, then end (OpenBSD just closes; a reply is kinder and costs nothing). */
  refuse(reply: string, reason: EndReason): void {
    if (this.ended) return;
    this.client.write(reply);
    void this.end(reason);
  }

  /** End the session: flush what is owed, close both sides, take the pinholes out. Idempotent. */
  end(reason: EndReason): Promise<void> {
    if (this.ending) return this.ending;
    this.ending = this.doEnd(reason);
    return this.ending;
  }

  private async doEnd(_reason: EndReason): Promise<void> {
    this.ev(LOG_INFO, 'session-end', 'ending session', { reason: _reason });
    if (this.bannerTimer) clearTimeout(this.bannerTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const s of [this.client, this.upstream]) {
      if (!s) continue;
      s.removeAllListeners('data');
      s.on('error', () => undefined);
      // end() sends what is still queued (a final 221, a refusal) before the FIN; destroy after a while
      // in case the peer never reads it.
      s.end();
      setTimeout(() => s.destroy(), 2000).unref();
    }
    try {
      await this.fw; // a negotiation still in flight must land before it can be removed
      if (this.hasPinholes) await this.o.firewall.clear(this.owner);
    } catch (e) {
      this.ev(LOG_ERR, 'removal-failed', `${this.o.firewall.name} rule removal failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.o.onEnd(this);
    }
  }
}
