#!/usr/bin/env node
// ftp-proxy: the command. Parses the flags, daemonizes unless -d, runs the daemon until a signal.
import { spawn } from 'node:child_process';
import { closeSync, readFileSync, writeSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Config, parseCommandLine } from './config.js';
import { Daemon, removePidfile, writePidfile } from './daemon.js';
import { StartupError } from './errors.js';
import { LOG_CRIT, LOG_ERR } from './levels.js';
import { Log } from './log.js';

/** Set in the environment of the re-spawned daemon process; its fd 3 reports start-up to the parent. */
const DAEMON_ENV = 'FTP_PROXY_DAEMON_CHILD';
const DEFAULT_PIDFILE = '/run/ftp-proxy.pid';

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
function daemonize(): void {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, [DAEMON_ENV]: '1' },
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

function tellParent(message: string): void {
  try {
    writeSync(3, message);
    closeSync(3);
  } catch {
    // the parent is gone; nothing to tell
  }
}

async function run(config: Config, inChild: boolean): Promise<void> {
  const log = new Log({ level: config.logLevel, format: config.logFormat });
  if (inChild) log.useSyslog();
  const pidfile = config.pidfile ?? (inChild ? DEFAULT_PIDFILE : undefined);

  process.on('uncaughtException', (e) => {
    log.log(LOG_CRIT, `fatal: ${e.stack ?? e.message}`);
    log.close();
    process.exit(1);
  });

  const daemon = new Daemon({ config, log });
  try {
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
      writePidfile(pidfile);
    } catch (e) {
      log.log(LOG_ERR, `cannot write pidfile ${pidfile}: ${(e as Error).message}`);
    }
  }
  if (inChild) tellParent('ready\n');

  let exiting = false;
  const onSignal = (name: 'SIGHUP' | 'SIGINT' | 'SIGTERM'): void => {
    if (exiting) return;
    exiting = true;
    log.log(LOG_ERR, `exiting on signal ${constants.signals[name]}`);
    // A firewall that hangs must not keep the daemon alive forever.
    setTimeout(() => process.exit(1), 15000).unref();
    void daemon.stop().finally(() => {
      if (pidfile) removePidfile(pidfile);
      log.close();
      process.exit(0);
    });
  };
  for (const s of ['SIGHUP', 'SIGINT', 'SIGTERM'] as const) process.on(s, () => onSignal(s));
}

const outcome = parseCommandLine(process.argv.slice(2), version());
if ('exit' in outcome) {
  if (outcome.stdout) process.stdout.write(outcome.stdout);
  if (outcome.stderr) process.stderr.write(outcome.stderr);
  process.exit(outcome.exit);
} else {
  const inChild = process.env[DAEMON_ENV] === '1';
  if (!outcome.config.foreground && !inChild) daemonize();
  else void run(outcome.config, inChild);
}
