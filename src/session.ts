// One FTP session: the client's control connection, the proxy's connection to the server, the timers,
// and the firewall calls. The protocol decisions are FtpControl's; this file carries out its actions.
import { connect, type Socket } from 'node:net';
import { SessionJoins } from './data/joins.js';
import { withFreeProxyPort } from './data/port-retry.js';
import { type Action, FtpControl, type JoinRequest, type Negotiation, type NegotiationResult, type TlsConfig } from './ftp/control.js';
import { LineSplitter } from './ftp/lines.js';
import { vis } from './ftp/vis.js';
import {
  activePinhole,
  describePinhole,
  type FirewallBackend,
  isNoopRedirect,
  type Owner,
  passivePinhole,
  passthroughPinhole,
  type Pinhole,
  PinholeConflict,
  type SessionEnds,
} from './firewall/backend.js';
import { type Level, LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE } from './levels.js';
import type { Fields, Log } from './log.js';
import type { Metrics, NegotiationMode } from './metrics.js';
import { canonical, type Family, familyOf } from './net/address.js';
import { type Endpoint, rdomains } from './net/original-dst.js';
import { defaultPolicy, type Policy } from './policy/parse.js';
import { ControlLegs } from './control-legs.js';
import { SessionTls } from './session-tls.js';
import type { DataPath, SessionInfo } from './status-sessions.js';
import type { TlsMaterial } from './tls/certs-policy.js';

/** The port of implicit FTPS (RFC 4217 does not define it; every client and server knows it). */
export const IMPLICIT_FTPS_PORT = 990;

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
  /** FTPS: the certificates and checks of the policy's tls_* keys (loaded with the policy). */
  tlsMaterial?: TlsMaterial | null;
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
  /** Firewall and join jobs started and not yet settled: none, and the next one starts at once. */
  private fwJobs = 0;
  /** The session's addresses as its pinholes name them, fixed once the server connection is up. */
  private sessionEnds: SessionEnds | null = null;
  private ending: Promise<void> | null = null;
  private hasPinholes = false;
  /** The pinhole the last negotiation installed, for the JSON log (described only when a line is logged). */
  private lastPinhole: Pinhole | string = '';
  /** OpenBSD routing domains for pf rules; null elsewhere. */
  private readonly rdomains: { client: number; proxy: number } | null;
  private readonly policy: Policy;
  /** The data connections the proxy joins itself (data_mode, PROT P). */
  private readonly joins: SessionJoins;
  /** The control connections as the session reads and writes them (socket, TLS, or a blind pipe). */
  private readonly legs: ControlLegs;
  private readonly tlsConfig: TlsConfig;
  private tls: SessionTls | null = null;
  /** How the last data connection was set up (`ftp-proxy status`). */
  private dataPath: DataPath = 'none';

  constructor(
    private readonly client: Socket,
    private readonly o: SessionOptions,
  ) {
    this.id = o.id;
    this.owner = { instance: o.firewall.instance, session: o.id };
    this.clientAddress = canonical(client.remoteAddress ?? '');
    this.rdomains = process.platform === 'openbsd' ? rdomains(client) : null;
    this.policy = o.policy ?? defaultPolicy();
    this.legs = new ControlLegs(client, {
      clientData: (chunk) => this.onClientData(chunk),
      serverData: (chunk) => this.onServerData(chunk),
      clientError: (e) => this.onClientError(e),
      serverError: (e) => this.onServerError(e),
      clientEnd: () => {
        if (this.ended) return;
        this.ev(LOG_INFO, 'client-close', 'client close');
        void this.end('client close');
      },
      serverEnd: () => {
        if (this.ended) return;
        this.ev(LOG_INFO, 'server-close', 'server close');
        void this.end('server close');
      },
      drain: () => this.flow(),
    });
    const t = this.policy.tls;
    const terminate = t.client === 'accept' || t.client === 'require';
    const clientImplicit = terminate && o.original.port === IMPLICIT_FTPS_PORT;
    const range = t.passthroughPortsByServer.get(canonical(o.server.address)) ?? t.passthroughPorts;
    this.tlsConfig = {
      client: t.client,
      server: t.server,
      clientImplicit,
      // An implicit FTPS server speaks TLS from its first byte, whatever the client does.
      serverImplicit: t.client !== 'passthrough' && (t.server !== 'none' || clientImplicit) && o.server.port === IMPLICIT_FTPS_PORT,
      ...(range ? { passthroughPorts: { low: range.low, high: range.high } } : {}),
    };
    if ((t.client !== 'none' && t.client !== 'passthrough') || t.server !== 'none') {
      if (o.tlsMaterial) {
        this.tls = new SessionTls({
          material: o.tlsMaterial,
          server: { address: canonical(o.server.address), port: o.server.port },
          context: `session ${o.id}`,
          onInfo: (leg, i) => {
            o.metrics?.tlsHandshakes.inc({ leg: leg.replace(' ', '_'), result: i.reused ? 'resumed' : 'full' });
            const level = leg.endsWith('data') ? LOG_DEBUG : LOG_INFO;
            this.ev(level, 'tls', `${leg} TLS: ${i.version} ${i.cipher}${i.servername ? ` sni ${vis(i.servername, 80)}` : ''}${i.reused ? ' (resumed)' : ''}`, {
              leg,
              version: i.version,
              cipher: i.cipher,
              ...(i.servername ? { sni: vis(i.servername, 80) } : {}),
              reused: i.reused ? 1 : 0,
            });
          },
        });
      }
    }
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
      wrap: (tls) => {
        if (!this.tls) throw new Error('PROT P without TLS material');
        return this.tls.dataWrap(tls);
      },
      joinEnded: (st) => {
        const kind = this.dataPath === 'relay' ? 'tls_relay' : 'join';
        o.metrics?.relayedBytes.inc({ kind, direction: 'to_client' }, st.toClient);
        o.metrics?.relayedBytes.inc({ kind, direction: 'to_server' }, st.toServer);
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

  /** What `ftp-proxy status` shows of this session beyond the kernel's pinholes. */
  snapshot(): SessionInfo {
    const legs = this.control?.legs ?? { client: false, server: false };
    return { session: this.id, client: this.clientAddress, server: canonical(this.o.server.address), tls: { ...legs }, data: this.dataPath };
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
    // While TLS starts on it, the socket is the handshake's: its failure is reported there, with a reply.
    up.on('error', (e) => {
      if (!this.legs.serverSwitching) this.onServerError(e);
    });
    up.on('end', () => {
      if (this.ended || this.legs.serverSwitching) return;
      this.ev(LOG_INFO, 'server-close', 'server close');
      void this.end('server close');
    });
    up.on('close', () => {
      if (!this.legs.serverSwitching) void this.end('server gone');
    });
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
      { anonymousOnly: this.o.anonymousOnly, debug: this.o.log.enabled(LOG_DEBUG), info: this.o.log.enabled(LOG_INFO), firewallName: this.o.firewall.name, policy: this.policy, tls: this.tlsConfig },
    );
    this.armIdle();
    if (this.tlsConfig.client === 'passthrough' && this.o.original.port === IMPLICIT_FTPS_PORT) {
      this.implicitPassthrough();
      return;
    }
    if (this.tlsConfig.serverImplicit || this.tlsConfig.clientImplicit) {
      void this.implicitTls(up);
      return;
    }
    this.attach(up);
  }

  /** Port 990: TLS on the server leg first (a minted certificate mirrors the server's), then the client's. */
  private async implicitTls(up: Socket): Promise<void> {
    try {
      if (!this.tls) throw new Error('implicit FTPS (port 990) without TLS in the policy');
      if (this.tlsConfig.serverImplicit) await this.legs.startServer(this.tls, up, false);
      if (this.ended) return;
      if (this.tlsConfig.clientImplicit) {
        const r = await this.legs.startClient(this.tls, false);
        if (r.refusal) {
          this.refuseTls(r.refusal);
          return;
        }
      }
    } catch (e) {
      this.ev(LOG_ERR, 'tls-failed', `implicit FTPS: ${vis((e as Error).message)}`);
      void this.end('TLS handshake failed');
      return;
    }
    if (!this.ended) this.attach(up);
  }

  /**
   * tls_client passthrough on port 990: the control connection is TLS from its first byte, so nothing of
   * it can be read. The range pinhole goes in at once and the bytes are relayed blind.
   */
  private implicitPassthrough(): void {
    const range = this.tlsConfig.passthroughPorts;
    if (!range) {
      this.ev(LOG_ERR, 'passthrough-refused', `implicit FTPS passed through: no tls_passthrough_ports for ${this.o.server.address}, closing`);
      void this.end('no passthrough range');
      return;
    }
    this.negotiate(0, { kind: 'passthrough', low: range.low, high: range.high }, (r) => {
      if (this.ended) return;
      if (!r.ok) {
        this.ev(LOG_CRIT, 'firewall-failed', `${this.o.firewall.name} operation failed: ${vis(r.error)}`);
        void this.end('passthrough pinhole refused');
        return;
      }
      this.ev(LOG_INFO, 'passthrough', `implicit FTPS passed through: data ports ${range.low}-${range.high} open to the server for this session`, { low: range.low, high: range.high });
      this.goBlind();
    });
  }

  /** Start reading both control streams (after implicit TLS, if any). */
  private attach(up: Socket): void {
    this.legs.attach(up);
    this.flow();
  }

  /** The server's certificate does not name what the client asked for: say so to the client, under TLS. */
  private refuseTls(reason: string): void {
    this.ev(LOG_ERR, 'tls-verify-failed', `server certificate refused: ${reason}`);
    this.refuse(`421 The server's certificate failed verification: ${reason.replace(/[\r\n]/g, ' ')}\r\n`, 'server certificate refused');
  }

  /** A 'tls' action: the state machine hears back through tlsDone(). */
  private doTls(a: Extract<Action, { type: 'tls' }>): void {
    const tls = this.tls;
    const fail = (error: string): void => {
      this.o.metrics?.tlsHandshakes.inc({ leg: a.leg, result: 'failed' });
      if (this.ended || !this.control) return;
      this.run(this.control.tlsDone(a.id, { ok: false, error }));
      this.flow();
    };
    const done = (): void => {
      if (this.ended || !this.control) return;
      this.run(this.control.tlsDone(a.id, { ok: true }));
      this.flow();
    };
    if (!tls) {
      fail('no TLS certificates loaded');
      return;
    }
    if (a.leg === 'server') {
      const up = this.upstream!;
      this.legs.hold('server', up);
      if (this.serverLines.takeRest().length) {
        this.ev(LOG_NOTICE, 'tls-injection', 'server sent bytes after 234 before the TLS handshake: refused');
        fail('the server sent bytes after its 234');
        return;
      }
      this.legs.startServer(tls, up).then(
        () => {
          if (this.ended) return this.legs.serverIo?.destroy();
          done();
        },
        (e: Error) => fail(e.message),
      );
      return;
    }
    if (a.op === 'start') {
      this.legs.hold('client', null);
      if (this.clientLines.takeRest().length) {
        // Bytes sent before our 234 could not be a ClientHello: a command smuggled into the TLS session.
        this.ev(LOG_NOTICE, 'tls-injection', 'client sent bytes after AUTH before the TLS handshake: refused');
        void this.end('bytes after AUTH before TLS');
        return;
      }
      this.legs.startClient(tls).then(
        (r) => {
          if (this.ended) return r.socket.destroy();
          if (r.refusal) return this.refuseTls(r.refusal);
          done();
        },
        (e: Error) => {
          this.o.metrics?.tlsHandshakes.inc({ leg: 'client', result: 'failed' });
          this.ev(LOG_ERR, 'tls-failed', vis(e.message));
          void this.end('TLS handshake with the client failed');
        },
      );
      return;
    }
    // CCC: the 200 went out under TLS just before; then plain text on the same socket.
    this.clientLines.takeRest();
    this.legs.clearClient((rest) => {
      done();
      if (rest.length) this.onClientData(rest);
      this.flow();
    });
  }

  /** tls_client passthrough: the pinhole is in and the 234 is out; from now on bytes, not lines. */
  private goBlind(): void {
    // The greeting and the login happen under TLS, where the proxy cannot see them: -t still applies.
    if (this.bannerTimer) clearTimeout(this.bannerTimer);
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.bannerTimer = this.loginTimer = null;
    // Reads still count for -t: a long transfer keeps the control connection quiet, as in plain FTP.
    this.legs.goBlind(this.upstream!, this.clientLines.takeRest(), this.serverLines.takeRest(), (side) => {
      if (side === 'client') this.lastClientRead = Date.now();
      else this.lastServerRead = Date.now();
    });
  }

  private onClientData(chunk: Buffer): void {
    this.lastClientRead = Date.now();
    for (const ev of this.clientLines.push(chunk)) {
      if (!this.control || this.ended) return;
      if (this.legs.clientSwitching || this.legs.blind) {
        // Lines read in the clear behind an AUTH must not run under TLS (STARTTLS command injection).
        this.ev(LOG_NOTICE, 'tls-injection', 'client sent commands after AUTH before the TLS handshake: refused');
        void this.end('commands after AUTH before TLS');
        return;
      }
      if (this.tls && ev.kind === 'line' && !this.control.legs.client && this.control.legs.server && !/^AUTH\b/i.test(ev.line.toString('latin1'))) {
        // A plain client behind a TLS server leg: no SNI will come to check the server's name against.
        const refusal = this.tls.checkForPlainClient();
        if (refusal) return this.refuseTls(refusal);
      }
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
    const readClient = !c.clientPaused && c.pendingCommands < PIPELINE_PAUSE && !(this.legs.serverIo?.writableNeedDrain ?? false);
    const readServer = !c.serverPaused && !this.legs.clientIo.writableNeedDrain;
    this.legs.flow(readClient, readServer);
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
      if (this.legs.serverSwitching || this.legs.blind) {
        this.ev(LOG_NOTICE, 'tls-injection', 'server sent replies after 234 before the TLS handshake: refused');
        void this.end('replies after 234 before TLS');
        return;
      }
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
          this.legs.serverIo?.write(a.data);
          break;
        case 'toClient':
          this.legs.clientIo.write(a.data);
          break;
        case 'tls':
          this.doTls(a);
          break;
        case 'blind':
          this.goBlind();
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
            ...((a.event === 'active' || a.event === 'passive') && this.lastPinhole
              ? { pinhole: typeof this.lastPinhole === 'string' ? this.lastPinhole : describePinhole(this.lastPinhole) }
              : {}),
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

  /** `done`: who hears the result (the state machine when absent). */
  private negotiate(id: number, n: Negotiation, done?: (r: NegotiationResult) => void): void {
    this.joins.close('replaced by a new negotiation');
    this.dataPath = n.kind === 'passthrough' ? 'passthrough' : 'kernel';
    // With nothing in flight the firewall call starts now, not a few promise turns later (the hop).
    const job = this.fwJobs === 0 ? this.install(n) : this.fw.then(() => this.install(n));
    this.settle(id, job, n.kind === 'passthrough' ? 'passive' : n.kind, done);
  }

  /** What pinholes name: the addresses do not change in a session, so they are worked out once. */
  private get ends(): SessionEnds {
    if (this.sessionEnds) return this.sessionEnds;
    const ends: SessionEnds = {
      family: familyOf(this.o.original.address) ?? 4,
      client: this.clientAddress,
      originalServer: this.o.original.address,
      server: canonical(this.o.server.address),
      proxy: canonical(this.upstream?.localAddress ?? ''),
    };
    // Before the server connection is up the proxy's address is not known yet: not kept then.
    if (ends.proxy) this.sessionEnds = ends;
    return ends;
  }

  /** A negotiation's pinhole into the firewall; a proxy port another pinhole holds is retried. */
  private async install(n: Negotiation): Promise<NegotiationResult> {
    const ends = this.ends;
    try {
      if (n.kind === 'passthrough') {
        await this.put(passthroughPinhole(ends, n.low, n.high));
        return { ok: true, proxyPort: 0 };
      }
      return await withFreeProxyPort((pp) => {
        const pinhole =
          n.kind === 'passive' ? passivePinhole(ends, n.serverPort, pp) : activePinhole(ends, n.clientPort, pp, this.o.port20 && n.command === 'PORT');
        if (isNoopRedirect(pinhole)) throw new PinholeConflict(`proxy port ${pp} is the server's own port`);
        return this.put(pinhole).then((): NegotiationResult => ({ ok: true, proxyPort: pp }));
      }, this.o.random);
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  private put(pinhole: Pinhole): Promise<void> {
    if (this.rdomains) pinhole.rdomains = this.rdomains;
    return this.o.firewall.replace(this.owner, [pinhole]).then(() => this.pinholesInstalled(pinhole));
  }

  private pinholesInstalled(pinhole: Pinhole | string): void {
    this.hasPinholes = true;
    this.lastPinhole = pinhole;
  }

  /** Firewall and join jobs run one at a time, in order; their result goes back to the state machine. */
  private settle(id: number, job: Promise<NegotiationResult>, mode: NegotiationMode, done?: (r: NegotiationResult) => void): void {
    this.fwJobs++;
    const finished = (): void => {
      this.fwJobs--;
    };
    this.fw = job.then(finished, finished);
    void job.then((result) => {
      this.o.metrics?.negotiations.inc({ mode, result: result.ok ? 'ok' : 'failed' });
      if (done) return done(result);
      if (this.ended || !this.control) return;
      this.run(this.control.negotiationDone(id, result));
      this.flow();
    });
  }

  /** data_mode: a data connection the proxy joins itself (src/data/joins.ts). */
  private join(id: number, j: JoinRequest): void {
    // By the time a client negotiates again it has read the last transfer to its end and had its 226.
    this.joins.close('replaced by a new negotiation');
    this.dataPath = j.tls ? 'relay' : 'join';
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
    this.legs.clientIo.write(reply);
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
    this.tls?.close();
    this.legs.close(this.upstream, 2000);
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
