// The privileged process (privilege separation, Linux). It keeps CAP_NET_ADMIN and does three things:
// binds the -b listeners (port 21 and IP_TRANSPARENT need privilege), owns the firewall backend, and
// applies the pinholes the network process asks for once validate.ts has checked them. It never reads
// a byte from the network: the network process (src/privsep/child.ts), started through setpriv with no
// capability in any set and no_new_privs, gets the listeners and does the rest. When that process dies,
// this one removes everything of this instance from the firewall and exits with status 1 (the watchdog
// or systemd starts the daemon again).
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config.js';
import { loadPolicy } from '../policy/load.js';
import type { PassthroughRanges } from './validate.js';
import { bindListener, hasNetAdmin } from '../daemon.js';
import { StartupError } from '../errors.js';
import type { FirewallBackend } from '../firewall/backend.js';
import { createBackend } from '../choose-backend.js';
import { LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO } from '../levels.js';
import type { Log } from '../log.js';
import { setTransparent } from '../net/original-dst.js';
import { resolvePort } from '../net/services.js';
import { familyOf } from '../net/address.js';
import { SYSLOG_ENV, type ToChild, type ToParent } from './protocol.js';
import { localCache, RequestHandler } from './apply.js';

export interface ParentOptions {
  config: Config;
  log: Log;
  /** The daemon's own arguments: the network process parses them again. */
  argv: string[];
  /** Daemonized: the network process logs to syslog too. */
  syslog: boolean;
  /** setpriv(1) by its path. */
  setpriv: string;
  /** We hold CAP_SETPCAP: the network process's bounding set can be emptied too. */
  dropBounding: boolean;
  /** Node flags for the network process (V8's small young generation). */
  execArgv: string[];
  /** Another network process (tests: one that asks for what a compromised one would). */
  childScript?: string;
}

/** The words that start the network process with nothing: no capability in any set, no_new_privs. */
export function dropArgs(dropBounding: boolean): string[] {
  return ['--inh-caps=-all', '--ambient-caps=-all', ...(dropBounding ? ['--bounding-set=-all'] : []), '--no-new-privs', '--'];
}

const describeExit = (code: number | null, signal: NodeJS.Signals | null): string => (signal ? `signal ${signal}` : `status ${code}`);

export class PrivilegedParent {
  private child: ChildProcess | null = null;
  private backend: FirewallBackend | null = null;
  /** Replace/clear requests, once the backend is initialized. */
  private handler: RequestHandler | null = null;
  /** tls_client passthrough: the ranges the policy allows (null: none). */
  private ranges: PassthroughRanges | null = null;
  private ready = false;
  private stopping = false;
  private readonly bound = new Set<string>();
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly o: ParentOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The network process's live sessions, as it last said. */
  private liveSessions = 0;

  sessions(): number {
    return this.liveSessions;
  }

  async start(): Promise<void> {
    const { config: c, log } = this.o;
    if (!hasNetAdmin()) throw new StartupError('needs to start as root (or with CAP_NET_ADMIN)');
    this.backend = await createBackend(c, log);
    // Descriptor 4 of the network process is /dev/null: never the pidfile root may have given us there.
    const devnull = openSync('/dev/null', 'r');
    const env: NodeJS.ProcessEnv = { ...process.env, ...(this.o.syslog ? { [SYSLOG_ENV]: '1' } : {}) };
    const child = spawn(this.o.setpriv, [...dropArgs(this.o.dropBounding), process.execPath, ...this.o.execArgv, this.o.childScript ?? fileURLToPath(new URL('./child.js', import.meta.url)), ...this.o.argv], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', devnull],
      env,
      serialization: 'json',
    });
    closeSync(devnull);
    this.child = child;
    return new Promise((resolve, reject) => {
      this.exited = new Promise((done) =>
        child.on('exit', (code, signal) => {
          done();
          if (!this.ready) reject(new StartupError(`the network process exited during start-up (${describeExit(code, signal)})`));
          else if (!this.stopping) void this.died(describeExit(code, signal));
        }),
      );
      child.on('error', (e) => reject(new StartupError(`cannot start the network process: ${e.message}`)));
      child.on('message', (m: ToParent) => {
        if (m.op === 'hello') child.send({ op: 'hello', name: this.backend!.name });
        else if (m.op === 'ready') {
          this.ready = true;
          log.log(LOG_INFO, `network process ${child.pid} runs with no capability`, { event: 'privsep', pid: child.pid });
          resolve();
        } else if (m.op === 'error') {
          if (!this.ready) reject(new StartupError(String(m.message)));
        } else if (m.op === 'sessions') {
          // A number for a status line, nothing more: taken only when it is one.
          if (Number.isSafeInteger(m.count) && m.count >= 0) this.liveSessions = m.count;
        } else void this.request(m);
      });
    });
  }

  private reply(m: ToChild, handle?: Server | Socket, sent?: () => void): void {
    try {
      if (this.child?.connected) this.child.send(m, handle, sent ? () => sent() : undefined);
    } catch {
      // the network process is gone; its exit handler does the rest
    }
  }

  /** One request of the network process: checked, then done; answered by its id either way. */
  private async request(m: ToParent): Promise<void> {
    const { log, config: c } = this.o;
    if (!('id' in m) || !Number.isSafeInteger(m.id)) {
      log.log(LOG_ERR, 'privsep: a message without a request id from the network process, ignored', { event: 'privsep-refused' });
      return;
    }
    const id = m.id;
    const no = (error: string): void => this.reply({ id, ok: false, error });
    if (m.op === 'bind') {
      // Only our own -b addresses and port, each once: the request names, it does not choose.
      const port = resolvePort(c.listenPort);
      if (!c.listenAddresses.includes(m.host) || m.port !== port || this.bound.has(m.host)) return no(`bind ${String(m.host)} port ${String(m.port)}: not a listener of this daemon`);
      this.bound.add(m.host);
      try {
        const server = await bindListener(m.host, port);
        // Connections accepted here before the handover reaches the other side go there as sockets.
        server.on('connection', (s: Socket) => this.reply({ op: 'connection', host: m.host }, s));
        if (!setTransparent(server, familyOf(m.host) === 6)) log.log(LOG_DEBUG, `IP_TRANSPARENT not set on ${m.host}: tproxy interception will not reach it`);
        this.reply({ id, ok: true }, server, () => server.close());
      } catch (e) {
        no((e as Error).message);
      }
      return;
    }
    if (m.op === 'init') {
      if (this.handler) return no('already initialized');
      try {
        await this.backend!.init();
        this.readRanges();
        this.handler = new RequestHandler(this.backend!, { port20: c.port20, maxHolders: c.maxSessions, isLocal: localCache(), passthrough: () => this.ranges }, log);
        this.reply({ id, ok: true, instance: this.backend!.instance });
      } catch (e) {
        no(e instanceof Error ? e.message : String(e));
      }
      return;
    }
    if (!this.handler) return no('the firewall is not initialized');
    this.reply(await this.handler.handle(id, m));
  }

  /** The network process died: nothing of this instance may stay in the firewall. */
  private async died(how: string): Promise<void> {
    const { log } = this.o;
    log.log(LOG_CRIT, `the network process (pid ${this.child?.pid}) exited (${how}): removing this instance's pinholes and exiting`, {
      event: 'privsep-child-died',
    });
    try {
      await this.backend?.close();
    } catch (e) {
      log.log(LOG_ERR, `${this.backend?.name} cleanup failed: ${e instanceof Error ? e.message : String(e)}`, { event: 'cleanup-failed' });
    }
    log.close();
    process.exit(1);
  }

  /** SIGUSR1: the network process reads its policy file again (and this one its pass-through ranges). */
  reloadPolicy(): void {
    this.readRanges();
    this.reply({ op: 'reload' });
  }

  /**
   * The policy's tls_passthrough_ports, the only ranges a range pinhole may open. A policy that does not
   * load changes nothing here: the network process says why, and keeps its previous policy too.
   */
  private readRanges(): void {
    const f = this.o.config.policyFile;
    if (f === undefined) return;
    try {
      const t = loadPolicy(f).tls;
      this.ranges =
        t.client === 'passthrough'
          ? { ...(t.passthroughPorts ? { any: { low: t.passthroughPorts.low, high: t.passthroughPorts.high } } : {}), byServer: new Map([...t.passthroughPortsByServer].map(([a, r]) => [a, { low: r.low, high: r.high }])) }
          : null;
    } catch {
      // the network process reports the policy's mistakes
    }
  }

  /** SIGUSR2: the network process logs its status line. */
  logStatus(): void {
    this.reply({ op: 'status' });
  }

  /** The network process ends its sessions (their pinholes go through us) and exits; then the rest goes. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      this.reply({ op: 'stop' });
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(t);
    }
    try {
      await this.backend?.close();
    } catch (e) {
      this.o.log.log(LOG_ERR, `${this.backend?.name} cleanup failed: ${e instanceof Error ? e.message : String(e)}`, { event: 'cleanup-failed' });
    }
  }
}
