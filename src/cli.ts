#!/usr/bin/env node
// ftp-proxy: the command. Parses the flags, daemonizes unless -d, runs the daemon until a signal.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, readFileSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Config, parseArgv, type StatusCommand } from './config.js';
import { Daemon } from './daemon.js';
import { StartupError } from './errors.js';
import { type BackendName, checkLinuxRuleOptions, detectBackend, hostProbe, ruleOptions } from './choose-backend.js';
import { LOG_CRIT, LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING } from './levels.js';
import { Log } from './log.js';
import { resolvePort } from './net/services.js';
import { SdNotify } from './sd-notify.js';
import { checkWholeConfig } from './validate.js';
import { formatStatus, readStatus } from './status.js';
import { printRules } from './print-rules.js';
import { loadPolicy } from './policy/load.js';
import { clearPidFd, cmdlineText, createFresh, PIDFILE_FD_ENV, removePidfile, writeFresh, writePidFd, writePidfile } from './pidfile.js';
import { CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_SETPCAP, capMask, capNames, effectiveCaps, lookupUser, setprivArgs } from './privileges.js';
import { PrivilegedParent } from './privsep/parent.js';
import { DEFAULT_USER, findSetpriv, plan, splitWanted } from './privsep/plan.js';

/** Set in the environment of the re-spawned daemon process; its fd 3 reports start-up to the parent. */
const DAEMON_ENV = 'FTP_PROXY_DAEMON_CHILD';
/** Set in the environment of the process started as --user (through setpriv). */
const USER_ENV = 'FTP_PROXY_AS_USER';
/** OpenBSD has no /run. */
const DEFAULT_PIDFILE = process.platform === 'openbsd' ? '/var/run/ftp-proxy.pid' : '/run/ftp-proxy.pid';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * daemon(3) for Node, which cannot fork: start this program again, detached and with no terminal, and
 * wait until it says it is listening (exit 0) or why it could not start (its message, exit 1).
 */
function daemonize(asUser: AsUser | null): void {
  const [cmd, args] = selfCommand(asUser);
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe', ...pidfileStdio(asUser)],
    env: { ...process.env, [DAEMON_ENV]: '1', ...userEnv(asUser) },
  });
  let said = '';
  const status = child.stdio[3] as NodeJS.ReadableStream;
  status.setEncoding('utf8');
  status.on('data', (d: string) => {
    said += d;
    if (said.startsWith('ready\n')) {
      child.unref();
      process.exit(0);
    }
  });
  child.on('exit', (code) => {
    const msg = said.startsWith('error ') ? said.slice(6).trim() : `daemon exited during start-up (status ${code ?? 'signal'})`;
    process.stderr.write(`ftp-proxy: ${msg}\n`);
    process.exit(1);
  });
}

interface AsUser {
  name: string;
  keep: number[];
  setpriv: string[];
  /** The pidfile, created and opened by root; the daemon gets it as its descriptor 4. */
  pidfd?: number;
}

/** The daemon's descriptor 4: the pidfile root opened for it (see src/pidfile.ts). */
const pidfileStdio = (asUser: AsUser | null): number[] => (asUser?.pidfd !== undefined ? [asUser.pidfd] : []);
const userEnv = (asUser: AsUser | null): Record<string, string> =>
  asUser ? { [USER_ENV]: asUser.name, ...(asUser.pidfd !== undefined ? { [PIDFILE_FD_ENV]: '4' } : {}) } : {};

/** The command that started this process, for the watchdog (paths resolved). */
const ownCommand = (): string[] => [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)];

/**
 * V8's young generation grows to tens of MiB under a burst of sessions and is slow to give it back; a
 * control-channel proxy allocates little per line, so 1 MiB semi-spaces keep its memory flat at no cost
 * in throughput (measured in test/e2e/load.test.ts). Given to the daemon process at its start (V8 takes
 * it only then); the systemd unit sets it through NODE_OPTIONS.
 */
const V8_FLAGS = ['--max-semi-space-size=1'];

/** This program with the same arguments; through setpriv when it is to run as --user. */
function selfCommand(asUser: AsUser | null): [string, string[]] {
  const mine = process.execArgv.some((a) => a.startsWith('--max-semi-space-size')) ? [] : V8_FLAGS;
  const self = [...mine, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)];
  return asUser ? ['setpriv', [...asUser.setpriv, process.execPath, ...self]] : [process.execPath, self];
}

/**
 * The capabilities the daemon keeps: CAP_NET_ADMIN, CAP_NET_BIND_SERVICE for a port below 1024, and
 * CAP_SETPCAP where it splits itself (src/privsep/), to empty the network process's bounding set. The
 * bounding set holds only these, so CAP_SETPCAP can grant nothing more.
 */
function keptCaps(config: Config): number[] {
  const port = resolvePort(config.listenPort);
  const caps = port !== null && port < 1024 ? [CAP_NET_ADMIN, CAP_NET_BIND_SERVICE] : [CAP_NET_ADMIN];
  return splitWanted(process.platform, config.backend, process.env) ? [...caps, CAP_SETPCAP] : caps;
}

/**
 * Started as root on Linux without --user: the dedicated user, when it exists (the install step
 * creates it) and setpriv(1) is there; else null, and the daemon says so and runs as root as before.
 */
function defaultUser(config: Config): string | null {
  if (process.platform !== 'linux' || config.backend === 'pf' || process.getuid?.() !== 0) return null;
  if (!lookupUser(readFileSync('/etc/passwd', 'utf8'), DEFAULT_USER) || !findSetpriv()) return null;
  return DEFAULT_USER;
}

/**
 * --user, in the root process: check; write the watchdog's command file and create the pidfile as root
 * (the user must never choose what root's watchdog runs), and hand the daemon the pidfile open, so that
 * it writes its pid and empties it at exit through that descriptor alone. The daemon then starts as
 * that user.
 */
function prepareUser(config: Config, name: string): AsUser {
  if (config.backend === 'pf' || process.platform === 'openbsd') {
    throw new StartupError('--user: pf needs root (pfctl opens /dev/pf); run the pf backend as root');
  }
  if (process.getuid?.() !== 0) throw new StartupError('--user: start as root; the daemon then runs as that user');
  const pw = lookupUser(readFileSync('/etc/passwd', 'utf8'), name);
  if (!pw) throw new StartupError(`unknown user ${name}`);
  if (pw.uid === 0) throw new StartupError(`--user ${name}: that is root`);
  const path = (process.env.PATH ?? '/usr/bin:/bin').split(':').find((d) => existsSync(`${d}/setpriv`));
  if (!path) throw new StartupError('--user needs setpriv(1) (util-linux): apt-get install util-linux');
  const pidfile = config.pidfile ?? (config.foreground ? undefined : DEFAULT_PIDFILE);
  const keep = keptCaps(config);
  const asUser: AsUser = { name, keep, setpriv: setprivArgs(pw, keep) };
  if (pidfile) {
    try {
      writeFresh(`${pidfile}.cmdline`, cmdlineText(ownCommand()));
      asUser.pidfd = createFresh(pidfile);
    } catch (e) {
      throw new StartupError(`cannot write pidfile ${pidfile}: ${(e as Error).message}`);
    }
  }
  return asUser;
}

/** -d with --user: run the daemon as the user in the foreground, pass signals on, exit with its status. */
function supervise(asUser: AsUser): void {
  const [cmd, args] = selfCommand(asUser);
  const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit', 'ignore', ...pidfileStdio(asUser)], env: { ...process.env, ...userEnv(asUser) } });
  // SIGUSR1 (reload) and SIGUSR2 (status) too: Node's defaults would open an inspector, or end this process.
  for (const sig of ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0)));
}

/** In the process started as --user: say so, after checking it really holds only what it should. */
function checkUser(config: Config, log: Log): void {
  const keep = keptCaps(config);
  const caps = effectiveCaps();
  if (caps !== capMask(keep)) throw new StartupError(`--user: unexpected capabilities ${caps.toString(16)}`);
  log.log(LOG_INFO, `running as ${process.env[USER_ENV]} (uid ${process.getuid?.()}) with only ${capNames(keep)}`);
}

function tellParent(message: string): void {
  try {
    writeSync(3, message);
    closeSync(3);
  } catch {
    // the parent is gone; nothing to tell
  }
}

interface Runner {
  start(): Promise<void>;
  stop(): Promise<void>;
  reloadPolicy(): unknown;
  logStatus(): void;
  /** Live sessions, for systemd's STATUS=. */
  sessions(): number;
}

/**
 * The daemon in one process, or split in two (src/privsep/): this process keeps CAP_NET_ADMIN and
 * the firewall, a network process with no capability serves the sessions.
 */
function runner(config: Config, log: Log, inChild: boolean): Runner {
  const p = plan(config.backend, { platform: process.platform, uid: process.getuid?.() ?? 0, caps: effectiveCaps(), env: process.env, setpriv: findSetpriv() });
  if (p.split) {
    return new PrivilegedParent({
      config,
      log,
      argv: process.argv.slice(2),
      syslog: inChild,
      setpriv: p.setpriv,
      dropBounding: p.dropBounding,
      execArgv: process.execArgv,
    });
  }
  if (p.why === 'running as root' && !config.user) {
    log.log(LOG_WARNING, `running as root: no user ${DEFAULT_USER} to drop to (create it: useradd --system --no-create-home --shell /usr/sbin/nologin ${DEFAULT_USER})`, {
      event: 'no-user',
    });
  } else if (p.why !== 'not wanted' && p.why !== 'running as root') {
    log.log(LOG_WARNING, `not separating privileges: ${p.why}; one process keeps CAP_NET_ADMIN and reads the network`, { event: 'no-privsep' });
  }
  const daemon = new Daemon({ config, log });
  return {
    start: () => daemon.start(),
    stop: () => daemon.stop(),
    reloadPolicy: () => daemon.reloadPolicy(),
    logStatus: () => log.log(LOG_NOTICE, daemon.statusLine(), { event: 'status' }),
    sessions: () => daemon.sessionCount,
  };
}

async function run(config: Config, inChild: boolean): Promise<void> {
  const log = new Log({ level: config.logLevel, format: config.logFormat });
  if (inChild) log.useSyslog();
  const pidfile = config.pidfile ?? (inChild ? DEFAULT_PIDFILE : undefined);
  // Started as --user: root opened the pidfile for us (no child of ours inherits the variable).
  const pidfd = process.env[PIDFILE_FD_ENV] !== undefined ? Number(process.env[PIDFILE_FD_ENV]) : undefined;
  delete process.env[PIDFILE_FD_ENV];

  process.on('uncaughtException', (e) => {
    log.log(LOG_CRIT, `fatal: ${e.stack ?? e.message}`);
    log.close();
    process.exit(1);
  });

  const daemon = runner(config, log, inChild);
  // Before start: a SIGUSR2 that comes as soon as "listening" is logged must not meet Node's default
  // action for it (terminate).
  process.on('SIGUSR2', () => daemon.logStatus());
  // SIGUSR1 reloads the policy file. Not SIGHUP: that ends the daemon, as on OpenBSD (which has no
  // reload), and scripts and rc systems rely on it. Our handler also keeps Node from opening its
  // inspector on SIGUSR1, its default.
  // Type=notify: systemd hears when we serve, reload and stop (a no-op without NOTIFY_SOCKET). Only this
  // process speaks to it: the variable is not passed on to the processes we start.
  const notify = new SdNotify();
  delete process.env.NOTIFY_SOCKET;
  process.on('SIGUSR1', () => {
    notify.reloading();
    daemon.reloadPolicy();
    notify.ready();
  });
  try {
    if (process.env[USER_ENV]) checkUser(config, log);
    await daemon.start();
  } catch (e) {
    const msg = e instanceof StartupError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
    if (inChild) tellParent(`error ${msg}\n`);
    else process.stderr.write(`ftp-proxy: ${msg}\n`);
    await daemon.stop().catch(() => undefined);
    process.exit(1);
  }
  if (pidfile) {
    try {
      if (pidfd !== undefined) writePidFd(pidfd);
      else writePidfile(pidfile, ownCommand());
    } catch (e) {
      log.log(LOG_ERR, `cannot write pidfile ${pidfile}: ${(e as Error).message}`);
    }
  }
  if (inChild) tellParent('ready\n');
  const sessionsStatus = (): string => {
    const n = daemon.sessions();
    return `${n} session${n === 1 ? '' : 's'}`;
  };
  notify.ready(sessionsStatus());
  if (notify.active) setInterval(() => notify.status(sessionsStatus()), 1000).unref();

  let exiting = false;
  const onSignal = (name: 'SIGHUP' | 'SIGINT' | 'SIGTERM'): void => {
    if (exiting) return;
    exiting = true;
    notify.stopping();
    log.log(LOG_ERR, `exiting on signal ${constants.signals[name]}`, { event: 'exiting', signal: constants.signals[name] });
    // A firewall that hangs must not keep the daemon alive forever.
    setTimeout(() => process.exit(1), 15000).unref();
    void daemon.stop().finally(() => {
      if (pidfd !== undefined) clearPidFd(pidfd);
      else if (pidfile) removePidfile(pidfile);
      log.close();
      process.exit(0);
    });
  };
  for (const s of ['SIGHUP', 'SIGINT', 'SIGTERM'] as const) process.on(s, () => onSignal(s));
}

/** --print-rules: the backend asked for, or the one this host would use (nftables when none answers). */
async function printRulesAndExit(c: Config): Promise<never> {
  try {
    let name: BackendName;
    if (c.backend !== 'auto') name = c.backend;
    else name = await detectBackend(hostProbe()).then((d) => d.name, () => (process.platform === 'openbsd' ? 'pf' : 'nftables'));
    if (name !== 'pf') checkLinuxRuleOptions(c);
    const pol = c.policyFile ? loadPolicy(c.policyFile) : null;
    // tls_client passthrough: the range pinhole of the -R server (or of any server) is printed too.
    const range = pol?.tls.client === 'passthrough' ? ((c.fixedServer ? pol.tls.passthroughPortsByServer.get(c.fixedServer) : undefined) ?? pol.tls.passthroughPorts ?? null) : null;
    process.stdout.write(printRules(c, name, ruleOptions(c), new Date(), pol?.dataMode ?? 'keep', range ? { low: range.low, high: range.high } : null));
    process.exit(0);
  } catch (e) {
    process.stderr.write(`ftp-proxy: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}

/** `status --watch`: the live view, redrawn every second (a full-screen clear, as watch(1)). */
async function watchStatus(s: StatusCommand): Promise<never> {
  process.on('SIGINT', () => process.exit(0));
  for (;;) {
    let text: string;
    try {
      text = formatStatus(await readStatus(s.backend));
    } catch (e) {
      text = `ftp-proxy status: ${e instanceof Error ? e.message : String(e)}\n`;
    }
    process.stdout.write(`\x1b[H\x1b[2Jftp-proxy status, every 1 s (^C to stop)   ${new Date().toISOString().slice(0, 19).replace('T', ' ')}\n\n${text}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function statusAndExit(s: StatusCommand): Promise<never> {
  if (s.watch) return watchStatus(s);
  try {
    const st = await readStatus(s.backend);
    process.stdout.write(s.json ? `${JSON.stringify(st, null, 2)}\n` : formatStatus(st));
    process.exit(0);
  } catch (e) {
    process.stderr.write(`ftp-proxy status: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}

// `ftp-proxy ca ...`: the CA tool for FTPS (src/tls/ca-command.ts), loaded only then, with its X.509 library.
if (process.argv[2] === 'ca') {
  const { caCommand } = await import('./tls/ca-command.js');
  const r = await caCommand(process.argv.slice(3));
  if (r.stdout) process.stdout.write(r.stdout);
  if (r.stderr) process.stderr.write(r.stderr);
  process.exit(r.exit);
}

const outcome = parseArgv(process.argv.slice(2), version());
if ('exit' in outcome) {
  if (outcome.stdout) process.stdout.write(outcome.stdout);
  if (outcome.stderr) process.stderr.write(outcome.stderr);
  process.exit(outcome.exit);
} else if ('status' in outcome) {
  void statusAndExit(outcome.status);
} else if (outcome.config.checkConfig) {
  void checkWholeConfig(outcome.config).then((r) => {
    if (r.stdout) process.stdout.write(r.stdout);
    if (r.stderr) process.stderr.write(r.stderr);
    process.exit(r.exit);
  });
} else if (outcome.config.printRules) {
  void printRulesAndExit(outcome.config);
} else {
  const c = outcome.config;
  const inChild = process.env[DAEMON_ENV] === '1';
  let asUser: AsUser | null = null;
  const user = process.env[USER_ENV] ? null : (c.user ?? defaultUser(c));
  if (user) {
    try {
      asUser = prepareUser(c, user);
    } catch (e) {
      process.stderr.write(`ftp-proxy: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    }
  }
  if (!c.foreground && !inChild) daemonize(asUser);
  else if (asUser) supervise(asUser);
  else void run(c, inChild);
}
