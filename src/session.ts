// One FTP session: the client's control connection, the proxy's connection to the server, the timers,
// and the firewall calls. The protocol decisions are FtpControl's; this file carries out its actions.
import { connect, type Socket } from 'node:net';
import { SessionJoins } from './data/joins.js';
import { withFreeProxyPort } from './data/port-retry.js';
import { type Action, FtpControl, type JoinRequest, type Negotiation, type NegotiationResult } from './ftp/control.js';
import { LineSplitter } from './ftp/lines.js';
import { vis } from './ftp/vis.js';
import { activePinhole, describePinhole, type FirewallBackend, type Owner, passivePinhole, type SessionEnds } from './firewall/backend.js';
import { type Level, LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE } from './levels.js';
import type { Fields, Log } from './log.js';
import type { Metrics, NegotiationMode } from './metrics.js';
import { canonical, type Family, familyOf } from './net/address.js';
import { type Endpoint, rdomains } from './net/original-dst.js';
import { defaultPolicy, type Policy } from './policy/parse.js';

/** OpenBSD's CONNECT_TIMEOUT: the server must connect and say something within this many seconds. */
export const BANNER_TIMEOUT = 30;
/** --login-timeout's default: seconds from connect to a 230 reply, as long as the banner wait. */
export const LOGIN_TIMEOUT = 30;
/** Stop reading a client that has this many commands outstanding, until replies catch up. */
const PIPELINE_PAUSE = 64;
/** After the session ends, a joined transfer still running has this many seconds to finish. */
const JOIN_GRACE = 30;

export interface SessionOptions {
  id: number;
  firewall: FirewallBackend;
  log: Log;
  /** -t, seconds; 0 = none. */
  idleTimeout: number;
  anonymousOnly: boolean;
  /** The policy (-f) in force when the session started; a reload does not change it. */
  policy?: Policy;
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
  /** --metrics: negotiations and relayed bytes are counted here. */
  metrics?: Metrics;
  bannerTimeout?: number;
  /** --login-timeout, seconds; 0 = none. */
  loginTimeout?: number;
  /**
   * A joined data connection (data_mode) takes a slot of -m: false when none is left. `release` is
   * called once when it closes.
   */
  joinSlot?: () => boolean;
  joinReleased?: () => void;
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
  private loginTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Firewall calls of this session, one at a time, in order. */
  private fw: Promise<unknown> = Promise.resolve();
  private ending: Promise<void> | null = null;
  private hasPinholes = false;
  /** The pinhole the last negotiation installed, for the JSON log. */
  private lastPinhole = '';
  /** OpenBSD routing domains for pf rules; null elsewhere. */
  private readonly rdomains: { client: number; proxy: number } | null;
  private readonly policy: Policy;
  /** The data connections the proxy joins itself (data_mode). */
  private readonly joins: SessionJoins;

  constructor(
    private readonly client: Socket,
    private readonly o: SessionOptions,
  ) {
    this.id = o.id;
    this.owner = { instance: o.firewall.instance, session: o.id };
    this.clientAddress = canonical(client.remoteAddress ?? '');
    this.rdomains = process.platform === 'openbsd' ? rdomains(client) : null;
    this.policy = o.policy ?? defaultPolicy();
    this.joins = new SessionJoins({
      client: this.clientAddress,
      originalServer: o.original.address,
      server: canonical(o.server.address),
      family: familyOf(o.original.address) ?? 4,
      proxy: () => canonical(this.upstream?.localAddress ?? ''),
      firewall: o.firewall,
      owner: this.owner,
      rdomains: this.rdomains,
      ...(o.random ? { random: o.random } : {}),
      idleTimeout: o.idleTimeout,
      ended: () => this.ended,
      ...(o.joinSlot ? { slot: o.joinSlot } : {}),
      ...(o.joinReleased ? { released: o.joinReleased } : {}),
      installed: (d) => this.pinholesInstalled(d),
      joinEnded: (st) => {
        o.metrics?.relayedBytes.inc({ kind: 'join', direction: 'to_client' }, st.toClient);
        o.metrics?.relayedBytes.inc({ kind: 'join', direction: 'to_server' }, st.toServer);
        const how = st.error ? `, ${vis(st.error)}` : '';
        this.ev(LOG_INFO, 'join-end', `data connection joined by the proxy ended: ${st.toClient} bytes to the client, ${st.toServer} to the server${how}`, {
          toClient: st.toClient,
          toServer: st.toServer,
        });
      },
    });
  }

  /** What every JSON log line of this session carries. */
  private fields(event: string): Fields {
    return { event, session: this.id, client: this.clientAddress, server: this.o.server.address };
  }

  /** A log line of this session: "#id message" in text, the fields too in JSON. */
  private ev(level: Level, event: string, message: string, extra: Fields = {}): void {
    if (!this.o.log.enabled(level)) return;
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
    const login = this.o.loginTimeout ?? LOGIN_TIMEOUT;
    if (login > 0) {
      // A client that never logs in must not hold a session slot for the whole idle timeout.
      this.loginTimer = setTimeout(() => {
        this.ev(LOG_NOTICE, 'login-timeout', `no login within ${login} s, closing`);
        this.refuse(`421 Login timeout (${login} seconds): closing control connection.\r\n`, 'login timeout');
      }, login * 1000);
    }
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
    // Probes after tcp_keepalive seconds of silence keep NAT state alive while a long transfer leaves the
    // control connections idle, and find a dead peer; 0 keeps the system's timers (OpenBSD's SO_KEEPALIVE).
    const keepalive = this.policy.tcpKeepalive * 1000;
    up.setKeepAlive(true, keepalive);
    this.client.setKeepAlive(true, keepalive);
    const advertiseToClient = this.policy.masqueradeClient[clientFamily];
    const advertiseToServer = this.policy.masqueradeServer[serverFamily];
    this.control = new FtpControl(
      this.id,
      {
        client: this.clientAddress,
        originalServer: this.o.original.address,
        server: canonical(this.o.server.address),
        proxy,
        clientFamily,
        serverFamily,
        ...(advertiseToClient ? { advertiseToClient } : {}),
        ...(advertiseToServer ? { advertiseToServer } : {}),
      },
      { anonymousOnly: this.o.anonymousOnly, debug: this.o.log.enabled(LOG_DEBUG), firewallName: this.o.firewall.name, policy: this.policy },
    );
    up.on('data', (chunk: Buffer) => this.onServerData(chunk));
    this.client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    // One listener each, for the session's life: a full socket's drain lets its reader go on.
    up.on('drain', () => this.flow());
    this.client.on('drain', () => this.flow());
    this.flow();
    this.armIdle();
  }

  private onClientData(chunk: Buffer): void {
    this.lastClientRead = Date.now();
    for (const ev of this.clientLines.push(chunk)) {
      if (!this.control || this.ended) return;
      this.run(ev.kind === 'line' ? this.control.clientLine(ev.line) : this.control.lineError('client', ev.error));
    }
    this.flow();
  }

  /**
   * Read each side only while what it sends can go somewhere: the client not while its lines wait on
   * the firewall, its pipeline is deep, or the server does not read; the server not while a reply waits
   * on the firewall or the client does not read. The one place that pauses and resumes.
   */
  private flow(): void {
    const c = this.control;
    if (!c || this.ended) return;
    const up = this.upstream;
    const readClient = !c.clientBlocked && c.pendingCommands < PIPELINE_PAUSE && !(up?.writableNeedDrain ?? false);
    const readServer = !c.serverBlocked && !this.client.writableNeedDrain;
    if (readClient) this.client.resume();
    else this.client.pause();
    if (up) {
      if (readServer) up.resume();
      else up.pause();
    }
  }

  private onServerData(chunk: Buffer): void {
    this.lastServerRead = Date.now();
    if (!this.serverSpoke) {
      this.serverSpoke = true;
      if (this.bannerTimer) clearTimeout(this.bannerTimer);
      this.bannerTimer = null;
    }
    const wasTransferring = this.control?.transferring ?? false;
    for (const ev of this.serverLines.push(chunk)) {
      if (!this.control || this.ended) return;
      this.run(ev.kind === 'line' ? this.control.serverLine(ev.line) : this.control.lineError('server', ev.error));
    }
    // A transfer just ended: the idle time counts from now, for both sides.
    if (wasTransferring && this.control && !this.control.transferring) this.lastClientRead = this.lastServerRead;
    if (this.loginTimer && this.control?.loggedIn) {
      clearTimeout(this.loginTimer);
      this.loginTimer = null;
    }
    this.flow();
  }

  private run(actions: Action[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'toServer':
          // A full socket is seen by flow() (writableNeedDrain) after this batch of actions.
          this.upstream?.write(a.data);
          break;
        case 'toClient':
          this.client.write(a.data);
          break;
        case 'log':
          // A negotiation the state machine refused itself never reaches the firewall: counted here.
          if (this.o.metrics && (a.event === 'bad-port' || a.event === 'ipv6-refused')) {
            this.o.metrics.negotiations.inc({ mode: /^(PORT|EPRT|LPRT)$/.test(String(a.fields?.command)) ? 'active' : 'passive', result: 'refused' });
          }
          // The fields are built only for a line that goes out.
          if (!this.o.log.enabled(a.level)) break;
          this.o.log.log(a.level, a.message, {
            ...this.fields(a.event),
            ...a.fields,
            ...((a.event === 'active' || a.event === 'passive') && this.lastPinhole ? { pinhole: this.lastPinhole } : {}),
          });
          break;
        case 'negotiate':
          this.negotiate(a.id, a.negotiation);
          break;
        case 'join':
          this.join(a.id, a.join);
          break;
        case 'joinCancel':
          this.joins.close('the server refused the command');
          break;
        case 'close':
          void this.end(a.reason);
          break;
      }
    }
  }

  private negotiate(id: number, n: Negotiation): void {
    this.joins.close('replaced by a new negotiation');
    const ends: SessionEnds = {
      family: familyOf(this.o.original.address) ?? 4,
      client: this.clientAddress,
      originalServer: this.o.original.address,
      server: canonical(this.o.server.address),
      proxy: canonical(this.upstream?.localAddress ?? ''),
    };
    const attempt = async (): Promise<NegotiationResult> => {
      try {
        return await withFreeProxyPort(async (pp) => {
          const pinhole =
            n.kind === 'passive'
              ? passivePinhole(ends, n.serverPort, pp)
              : activePinhole(ends, n.clientPort, pp, this.o.port20 && n.command === 'PORT');
          if (this.rdomains) pinhole.rdomains = this.rdomains;
          await this.o.firewall.replace(this.owner, [pinhole]);
          this.pinholesInstalled(describePinhole(pinhole));
          return { ok: true, proxyPort: pp };
        }, this.o.random);
      } catch (e) {
        return { ok: false, error: e instanceof Error ? e.message : String(e) };
      }
    };
    this.settle(id, this.fw.then(attempt), n.kind);
  }

  private pinholesInstalled(description: string): void {
    this.hasPinholes = true;
    this.lastPinhole = description;
  }

  /** Firewall and join jobs run one at a time, in order; their result goes back to the state machine. */
  private settle(id: number, job: Promise<NegotiationResult>, mode: NegotiationMode): void {
    this.fw = job.catch(() => undefined);
    void job.then((result) => {
      this.o.metrics?.negotiations.inc({ mode, result: result.ok ? 'ok' : 'failed' });
      if (this.ended || !this.control) return;
      this.run(this.control.negotiationDone(id, result));
      this.flow();
    });
  }

  /** data_mode: a data connection the proxy joins itself (src/data/joins.ts). */
  private join(id: number, j: JoinRequest): void {
    // By the time a client negotiates again it has read the last transfer to its end and had its 226.
    this.joins.close('replaced by a new negotiation');
    this.settle(id, this.fw.then(() => this.joins.run(j)), 'join');
  }

  private armIdle(): void {
    const t = this.o.idleTimeout * 1000;
    if (t <= 0) return;
    const check = (): void => {
      if (this.ended) return;
      const now = Date.now();
      if (this.control?.transferring) {
        // A transfer is running (1xx seen, final reply not yet): the control connection is quiet on
        // purpose. Keepalive probes watch the peers meanwhile.
        this.lastClientRead = this.lastServerRead = now;
        this.idleTimer = setTimeout(check, t);
        return;
      }
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
    if (this.loginTimer) clearTimeout(this.loginTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.joins.finish(JOIN_GRACE * 1000);
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
