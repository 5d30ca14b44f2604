// The network process (privilege separation, Linux): everything that reads what strangers send - the
// listeners' connections, sessions, the FTP state machine, data joins - with no capability at all. The
// privileged process started it (with the same arguments, through setpriv: no capability in any set,
// no_new_privs), binds the listeners for it and applies the pinholes it asks for, after checking them
// (src/privsep/validate.ts). Signals go to the privileged process, which passes stop, reload and status
// on; when it goes away, this process ends at once.
import type { Server, Socket } from 'node:net';
import { parseCommandLine } from '../config.js';
import { Daemon } from '../daemon.js';
import { StartupError } from '../errors.js';
import { LOG_CRIT, LOG_NOTICE } from '../levels.js';
import { Log } from '../log.js';
import { PrivsepFirewall } from './client.js';
import { SYSLOG_ENV, type ToChild, type ToParent } from './protocol.js';

const send = (m: ToParent): void => {
  process.send?.(m);
};

function main(): void {
  if (!process.send) {
    process.stderr.write('ftp-proxy: the network process is started by the daemon, not by hand\n');
    process.exit(2);
  }
  const outcome = parseCommandLine(process.argv.slice(2));
  if (!('config' in outcome)) {
    send({ op: 'error', message: outcome.stderr ?? 'bad arguments' });
    process.exit(1);
  }
  const config = outcome.config;
  const log = new Log({ level: config.logLevel, format: config.logFormat });
  if (process.env[SYSLOG_ENV]) log.useSyslog();
  delete process.env[SYSLOG_ENV];

  process.on('uncaughtException', (e) => {
    log.log(LOG_CRIT, `fatal: ${e.stack ?? e.message}`);
    log.close();
    process.exit(1);
  });
  // The privileged process is the daemon: signals are its (a terminal's ^C reaches both of us).
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) process.on(s, () => undefined);

  const firewall = new PrivsepFirewall({ send });
  const listeners = new Map<string, Server>();
  const daemon = new Daemon({
    config,
    log,
    firewall,
    unprivileged: true,
    bind: async (host, port) => {
      const s = await firewall.bind(host, port);
      listeners.set(host, s);
      return s;
    },
  });
  let started = false;
  let stopping = false;

  process.on('message', (m: ToChild, handle?: unknown) => {
    if ('id' in m) return firewall.answer(m, handle);
    switch (m.op) {
      case 'hello':
        firewall.name = m.name;
        void daemon.start().then(
          () => {
            started = true;
            send({ op: 'ready' });
            let told = 0;
            setInterval(() => {
              if (daemon.sessionCount !== told) send({ op: 'sessions', count: (told = daemon.sessionCount) });
            }, 1000).unref();
          },
          (e: unknown) => {
            send({ op: 'error', message: e instanceof StartupError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e) });
            process.exit(1);
          },
        );
        return;
      case 'connection': {
        // Accepted by the privileged process in the moment before it handed the listener over.
        const s = listeners.get(m.host);
        if (s && handle) s.emit('connection', handle as Socket);
        else (handle as Socket | undefined)?.destroy();
        return;
      }
      case 'stop':
        if (stopping) return;
        stopping = true;
        void daemon.stop().finally(() => {
          log.close();
          process.exit(0);
        });
        return;
      case 'reload':
        if (started) daemon.reloadPolicy();
        return;
      case 'status':
        log.log(LOG_NOTICE, daemon.statusLine(), { event: 'status' });
        return;
    }
  });
  send({ op: 'hello' }); // listening now: messages sent before a listener exists would be lost
  process.on('disconnect', () => {
    firewall.disconnected();
    if (stopping) return;
    log.log(LOG_CRIT, 'the privileged process is gone: exiting', { event: 'privsep-parent-gone' });
    log.close();
    process.exit(1);
  });
}

main();
