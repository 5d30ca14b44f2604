// The daemon: start-up in OpenBSD's order, the listener, the session table and its limit, signals, the
// pidfile. Sessions do the rest.
import { readdirSync, readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { Config } from './config.js';
import { errnoText } from './errno-text.js';
import { StartupError } from './errors.js';
import type { FirewallBackend } from './firewall/backend.js';
import { createBackend } from './choose-backend.js';
import { LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING } from './levels.js';
import type { Log } from './log.js';
import type { Metrics } from './metrics.js';
import { canonical, familyOf, hostPort } from './net/address.js';
import { isLocalAddress } from './net/local-addresses.js';
import { type Endpoint, originalDestination, setTransparent } from './net/original-dst.js';
import { describePolicy, loadPolicy } from './policy/load.js';
import { defaultPolicy, type Policy, PolicyError } from './policy/parse.js';
import { serveSessions } from './status-sessions.js';
import { loadTlsMaterial, type TlsMaterial } from './tls/certs-policy.js';
import { Session } from './session.js';
import { validateConfig } from './validate.js';



export interface DaemonOptions {
  config: Config;
  log: Log;
  /** Replace the firewall (tests). */
  firewall?: FirewallBackend;
  /** Called once listening (daemonizing: tell the parent). */
  onReady?: () => void;
  /** Skip the privilege check (tests with the fake firewall). */
  unprivileged?: boolean;
  /** Seconds the server has to connect and greet (tests shorten OpenBSD's 30). */
  bannerTimeout?: number;
  /** Source of randomness for proxy ports (tests). */
  random?: () => number;
  /** Privilege separation: the listeners come from the privileged process (src/privsep/), made transparent there. */
  bind?: (host: string, port: number) => Promise<Server>;
  /** Metrics to count into (tests); else made when --metrics is given. */
  metrics?: Metrics;
}

/** A listening socket on host:port, not yet serving; start-up errors in OpenBSD's words. */
export function bindListener(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ pauseOnConnect: true });
    server.once('error', (e: NodeJS.ErrnoException) => reject(new StartupError(`bind failed: ${host} port ${port}: ${errnoText(e)}`)));
    server.listen({ host, port, backlog: 511 }, () => {
      server.removeAllListeners('error');
      resolve(server);
    });
  });
}

/** Effective capabilities include CAP_NET_ADMIN (bit 12)? Root normally has it. */
export function hasNetAdmin(status = (): string => readFileSync('/proc/self/status', 'utf8')): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status());
    return m ? (BigInt(`0x${m[1]}`) & (1n << 12n)) !== 0n : process.getuid?.() === 0;
  } catch {
    return process.getuid?.() === 0;
  }
}

/** --max-per-client's default: a quarter of -m, at least 1. */
export const defaultMaxPerClient = (maxSessions: number): number => Math.max(1, Math.floor(maxSessions / 4));

/** A per-address refusal is logged at most this often per address. */
const PER_CLIENT_LOG_MS = 60_000;

/** Descriptors kept free for the firewall's child processes, syslog, timers and the like. */
const FD_RESERVE = 32;

/**
 * Sessions the descriptor limit allows: each takes two (client and server), as OpenBSD counts when it
 * sets RLIMIT_NOFILE to 2 * maxsessions + 10. Null where /proc cannot tell (not Linux).
 */
export function sessionCapacity(
  limits = (): string => readFileSync('/proc/self/limits', 'utf8'),
  openFds = (): number => readdirSync('/proc/self/fd').length,
): { limit: number; capacity: number } | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits());
    if (!m || m[1] === 'unlimited') return null;
    const limit = Number(m[1]);
    return { limit, capacity: Math.max(1, Math.floor((limit - openFds() - FD_RESERVE) / 2)) };
  } catch {
    return null;
  }
}

/** Say why, then close as soon as the reply has left: a refused connection must not hold a descriptor. */
function refuse(socket: Socket, reply: string): void {
  socket.on('error', () => undefined);
  socket.end(reply, () => socket.destroy());
  setTimeout(() => socket.destroy(), 2000).unref();
}


export class Daemon {
  private readonly servers: Server[] = [];
  private readonly sessions = new Set<Session>();
  private nextId = 1;
  private firewall: FirewallBackend | null = null;
  /** --metrics: counted here, served by metricsServer. */
  private metrics: Metrics | null = null;
  private metricsServer: HttpServer | null = null;
  /** Answers `ftp-proxy status` with the sessions' TLS legs and data paths (src/status-sessions.ts). */
  private sessionsServer: Server | null = null;
  private fixedServer: Endpoint | undefined;
  private listenPort = 0;
  private stopping = false;
  /** The policy new sessions get (-f); a reload replaces it, live sessions keep the one they started with. */
  private policy: Policy = defaultPolicy();
  /** The certificates and keys of the policy's tls_* keys, loaded with it (start-up, SIGUSR1). */
  private tlsMaterial: TlsMaterial | null = null;
  /** -m, lowered when the descriptor limit cannot hold that many sessions. */
  private maxSessions: number;
  /** --max-per-client: sessions one client address may hold; live counts per address. */
  private readonly maxPerClient: number;
  private readonly perClient = new Map<string, number>();
  private readonly perClientLogged = new Map<string, { until: number; unlogged: number }>();
  /** Joined data connections (data_mode) alive: they count against -m. */
  private joins = 0;

  constructor(private readonly o: DaemonOptions) {
    this.maxSessions = o.config.maxSessions;
    this.maxPerClient = o.config.maxPerClient ?? defaultMaxPerClient(o.config.maxSessions);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }



  /** OpenBSD's start-up order; any failure is a StartupError (exit status 1). */
  async start(): Promise<void> {
    const c = this.o.config;
    const { log } = this.o;
    if (!this.o.unprivileged && !hasNetAdmin()) throw new StartupError('needs to start as root (or with CAP_NET_ADMIN)');
    // The checks --check-config runs too (src/validate.ts); start stops at the first problem.
    const v = await validateConfig(c);
    if (!v.ok) throw new StartupError(v.problems[0]!);
    if (v.ok.policy) {
      this.policy = v.ok.policy;
      try {
        this.tlsMaterial = materialFor(this.policy);
      } catch (e) {
        throw new StartupError(`${c.policyFile}: ${(e as Error).message}`);
      }
      log.log(LOG_INFO, `policy ${c.policyFile}: ${describePolicy(this.policy)}`, { event: 'policy', file: c.policyFile });
    }
    for (const a of c.sourceAddresses) log.log(LOG_INFO, `using ${a} to connect to servers`, { event: 'source-address', address: a });
    const fixed = v.ok.fixedServer;
    if (fixed) {
      this.fixedServer = fixed;
      log.log(LOG_INFO, `using fixed server ${fixed.address}`, { event: 'fixed-server', server: fixed.address });
    }
    const port = v.ok.listenPort;
    this.listenPort = port;
    for (const a of c.listenAddresses) {
      const server = await this.listen(a, port);
      this.servers.push(server);
      if (!this.o.bind && !setTransparent(server, familyOf(a) === 6)) log.log(LOG_DEBUG, `IP_TRANSPARENT not set on ${a}: tproxy interception will not reach it`);
    }

    this.firewall = this.o.firewall ?? (await createBackend(c, log));
    if (this.o.metrics || c.metrics) {
      // Loaded only when asked for: prom-client costs start-up time every other command would pay.
      const { Metrics, instrumentFirewall, serveMetrics } = await import('./metrics.js');
      this.metrics = this.o.metrics ?? new Metrics();
      this.firewall = instrumentFirewall(this.firewall, this.metrics);
      if (c.metrics) {
        const { host, port } = c.metrics;
        try {
          this.metricsServer = await serveMetrics(this.metrics, host, port);
        } catch (e) {
          throw new StartupError(`bind failed: metrics ${host} port ${port}: ${errnoText(e)}`);
        }
        log.log(LOG_NOTICE, `metrics on http://${hostPort(host, port)}/metrics`, { event: 'metrics', address: host, port });
      }
    }
    try {
      await this.firewall.init();
    } catch (e) {
      throw new StartupError(`cannot initialize ${this.firewall.name}: ${e instanceof Error ? e.message : String(e)}`);
    }
    // The id in every firewall object of this daemon (`ftp-proxy status` names instances by it).
    log.log(LOG_INFO, `firewall: instance ${this.firewall.instance}`, { event: 'instance', instance: this.firewall.instance });
    try {
      this.sessionsServer = await serveSessions(this.firewall.instance, () => [...this.sessions].map((s) => s.snapshot()));
    } catch (e) {
      // Only `status` loses the TLS legs and data paths; the proxy itself is unaffected.
      log.log(LOG_NOTICE, `status cannot ask this instance for its sessions: ${(e as Error).message}`, { event: 'sessions-socket' });
    }
    // Running out of descriptors must become a spoken refusal, not connections closed unanswered.
    const budget = sessionCapacity();
    if (budget && budget.capacity < this.maxSessions) {
      log.log(LOG_WARNING, `file descriptor limit ${budget.limit} holds only ${budget.capacity} sessions: refusing more than that (-m ${this.maxSessions})`, {
        event: 'fd-limit',
        limit: budget.limit,
        sessions: budget.capacity,
      });
      this.maxSessions = budget.capacity;
    }
    if (budget) {
      // Room for the sessions' client sockets plus as many again for spoken refusals; beyond that Node
      // closes new connections itself (and says so through 'drop') before the descriptors run out.
      for (const srv of this.servers) srv.maxConnections = Math.max(1, Math.min(budget.capacity, this.maxSessions) * 2);
    }
    for (const a of c.listenAddresses) log.log(LOG_NOTICE, `listening on ${a} port ${c.listenPort}`, { event: 'listening', address: a, port: c.listenPort });
    this.o.onReady?.();
  }

  private async listen(host: string, port: number): Promise<Server> {
    const server = await (this.o.bind ?? bindListener)(host, port);
    // A listener handed over by the privileged process is a new Server on this side, made without options.
    (server as Server & { pauseOnConnect: boolean }).pauseOnConnect = true;
    server.on('connection', (s: Socket) => this.accept(s));
    server.on('error', (e) => this.o.log.log(2, `accept() failed: ${e.message}`, { event: 'accept-failed' }));
    server.on('drop', () => this.dropped());
    return server;
  }

  private droppedSince = 0;
  private dropTimer: NodeJS.Timeout | null = null;

  /**
   * A connection beyond what the descriptor limit leaves room for (server.maxConnections): Node closes
   * it at once. Logged once a second, with the count, like OpenBSD's accept() failure line.
   */
  private dropped(): void {
    this.droppedSince++;
    this.metrics?.sessionsRefused.inc({ reason: 'fd_budget' });
    if (this.dropTimer) return;
    this.dropTimer = setTimeout(() => {
      this.dropTimer = null;
      this.o.log.log(2, `accept() failed: out of file descriptors, ${this.droppedSince} connection(s) closed unanswered`, {
        event: 'accept-failed',
        dropped: this.droppedSince,
      });
      this.droppedSince = 0;
    }, 1000);
    this.dropTimer.unref();
  }

  private accept(socket: Socket): void {
    const { log, config: c } = this.o;
    const client = canonical(socket.remoteAddress ?? '');
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (this.sessions.size + this.joins >= this.maxSessions) {
      log.log(LOG_ERR, `client limit (${this.maxSessions}) reached, refusing connection from ${client}`, { event: 'client-limit', client });
      this.metrics?.sessionsRefused.inc({ reason: 'max_sessions' });
      refuse(socket, `421 Too many connections (client limit ${this.maxSessions} reached), try again later.\r\n`);
      return;
    }
    // One address must not take every slot (--max-per-client).
    const mine = this.perClient.get(client) ?? 0;
    if (mine >= this.maxPerClient) {
      this.perClientRefusal(client);
      this.metrics?.sessionsRefused.inc({ reason: 'max_per_client' });
      refuse(socket, `421 Too many connections from your address (limit ${this.maxPerClient}), try again later.\r\n`);
      return;
    }
    const id = this.nextId++;
    log.log(LOG_DEBUG, `#${id} accepted connection from ${client}`, { event: 'accepted', session: id, client });
    const original = originalDestination(socket);
    if (!original) {
      log.log(2, `#${id} getsockname failed: no local address`, { event: 'getsockname-failed', session: id, client });
      socket.destroy();
      return;
    }
    // A client that dialled the proxy itself (not intercepted) would make it connect to itself, again and
    // again (OpenBSD's XXX). In reverse mode a direct connection is the normal case.
    // Not redirected (the destination is the socket's own address) to our port, or dialled to one of
    // this host's addresses on our port: either way the upstream connection would come back here.
    const direct = original.address === canonical(socket.localAddress ?? '') && original.port === socket.localPort;
    if (!this.fixedServer && original.port === this.listenPort && (direct || isLocalAddress(original.address))) {
      log.log(LOG_ERR, `#${id} refusing connection from ${client} to the proxy itself (${original.address} port ${original.port}): not intercepted`, {
        event: 'self-loop',
        session: id,
        client,
      });
      this.metrics?.sessionsRefused.inc({ reason: 'self_loop' });
      refuse(socket, '421 This is a transparent FTP proxy; connect to an FTP server, not to the proxy.\r\n');
      return;
    }
    const firewall = this.firewall!;
    const session = new Session(socket, {
      id,
      firewall,
      log,
      idleTimeout: c.timeout,
      anonymousOnly: c.anonymousOnly,
      policy: this.policy,
      tlsMaterial: this.tlsMaterial,
      port20: c.port20,
      ...sourceFor(c.sourceAddresses, (this.fixedServer ?? original).address),
      original,
      server: this.fixedServer ?? original,
      counts: () => ({ count: this.sessions.size, max: this.maxSessions }),
      onEnd: (s) => {
        if (this.sessions.delete(s)) {
          this.metrics?.sessionsLive.dec();
          const n = (this.perClient.get(client) ?? 1) - 1;
          if (n > 0) this.perClient.set(client, n);
          else this.perClient.delete(client);
        }
      },
      loginTimeout: c.loginTimeout,
      // A joined data connection holds descriptors like a session: it takes a slot of -m.
      joinSlot: () => this.takeJoinSlot(),
      joinReleased: () => void this.joins--,
      ...(this.o.bannerTimeout !== undefined ? { bannerTimeout: this.o.bannerTimeout } : {}),
      ...(this.o.random ? { random: this.o.random } : {}),
      ...(this.metrics ? { metrics: this.metrics } : {}),
    });
    this.sessions.add(session);
    this.metrics?.sessionsLive.inc();
    this.metrics?.sessionsTotal.inc();
    this.perClient.set(client, mine + 1);
    session.start();
  }

  private takeJoinSlot(): boolean {
    if (this.sessions.size + this.joins >= this.maxSessions) return false;
    this.joins++;
    return true;
  }

  /** The per-address refusal is logged once a minute per address, with how many went unlogged. */
  private perClientRefusal(client: string): void {
    const now = Date.now();
    const seen = this.perClientLogged.get(client);
    if (seen && now < seen.until) {
      seen.unlogged++;
      return;
    }
    if (this.perClientLogged.size >= 1024) for (const [a, v] of this.perClientLogged) if (now >= v.until) this.perClientLogged.delete(a);
    const more = seen?.unlogged ? ` (${seen.unlogged} more refused since the last line)` : '';
    this.o.log.log(LOG_ERR, `per-client limit (${this.maxPerClient}) reached, refusing connections from ${client}${more}`, {
      event: 'client-address-limit',
      client,
      unlogged: seen?.unlogged ?? 0,
    });
    this.perClientLogged.set(client, { until: now + PER_CLIENT_LOG_MS, unlogged: 0 });
  }

  /**
   * SIGUSR1: read the policy file again. New sessions get the new policy; live sessions keep theirs, so
   * nothing is dropped. A file with mistakes changes nothing: each mistake is logged, the old policy stays.
   */
  reloadPolicy(): boolean {
    const { log, config: c } = this.o;
    if (c.policyFile === undefined) {
      log.log(LOG_NOTICE, 'no policy file (-f) to reload', { event: 'policy-reload' });
      return false;
    }
    try {
      const policy = loadPolicy(c.policyFile);
      // Both or neither: new sessions never get a policy whose certificates did not load.
      const material = materialFor(policy);
      this.policy = policy;
      this.tlsMaterial = material;
    } catch (e) {
      const lines = e instanceof PolicyError ? e.message.split('\n') : [(e as Error).message];
      for (const l of lines) log.log(LOG_ERR, l, { event: 'policy-error', file: c.policyFile });
      log.log(LOG_ERR, `policy ${c.policyFile} not reloaded, the previous one stays in force`, { event: 'policy-reload-failed', file: c.policyFile });
      return false;
    }
    log.log(LOG_NOTICE, `policy ${c.policyFile} reloaded: ${describePolicy(this.policy)}; ${this.sessions.size} live session(s) keep the previous one`, {
      event: 'policy-reload',
      file: c.policyFile,
      sessions: this.sessions.size,
    });
    return true;
  }

  /**
   * One line for SIGUSR2: sessions, sessions holding pinholes, memory. With node --expose-gc, after a
   * full collection, so that two readings compare what is really kept.
   */
  statusLine(): string {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const m = process.memoryUsage();
    const mib = (n: number): string => (n / 1048576).toFixed(1);
    const withPinholes = [...this.sessions].filter((s) => s.holdsPinholes).length;
    return `status: ${this.sessions.size} session(s), ${withPinholes} holding pinholes, rss ${mib(m.rss)} MiB, heap ${mib(m.heapUsed)} MiB${gc ? ' (after gc)' : ''}`;
  }

  /** End every session (their pinholes go), then the firewall's objects; for SIGTERM and friends. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const s of this.servers) s.close();
    this.metricsServer?.close();
    this.sessionsServer?.close();
    await Promise.all([...this.sessions].map((s) => s.end('daemon exiting')));
    try {
      await this.firewall?.close();
    } catch (e) {
      this.o.log.log(LOG_ERR, `${this.firewall?.name} cleanup failed: ${e instanceof Error ? e.message : String(e)}`, { event: 'cleanup-failed' });
    }
  }
}

/** The -a address of the server's family, if one was given. */
/** The TLS material a policy needs (null when it runs no TLS); throws TlsFileError naming the file. */
function materialFor(p: Policy): TlsMaterial | null {
  const t = p.tls;
  if (t.client === 'none' && t.server === 'none') return null;
  if (t.client === 'passthrough' && t.server === 'none') return null;
  return loadTlsMaterial(t);
}

function sourceFor(sources: string[], server: string): { sourceAddress?: string } {
  const a = sources.find((s) => familyOf(s) === familyOf(server));
  return a ? { sourceAddress: a } : {};
}
