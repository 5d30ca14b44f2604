// A daemon on loopback with the in-memory firewall and a scripted server, for tests of limits and
// timing: C=127.0.0.4 (clients), listener 127.0.0.2, S=127.0.0.3, P (-a) 127.0.0.5.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { memoryLog } from '../../src/log.js';
import { LineClient, scriptedServer, type ScriptedServer, type ServerScript } from './ftp-peers.js';

export interface DaemonRig {
  daemon: Daemon;
  fw: FakeFirewall;
  lines: string[];
  server: ScriptedServer;
  port: number;
  /** A client connection from `from` (default 127.0.0.4). */
  connect(from?: string): Promise<LineClient>;
  /** Connect, read the greeting, log in. */
  loggedIn(from?: string): Promise<LineClient>;
  close(): Promise<void>;
}

/** A port nothing listens on at `host` now (loopback tests' listeners and metrics). */
export async function freePort(host = '127.0.0.2'): Promise<number> {
  const s = createServer().listen(0, host);
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

export async function daemonRig(flags: string[] = [], opts: { policy?: string; script?: ServerScript } = {}): Promise<DaemonRig> {
  const cleanups: (() => Promise<void> | void)[] = [];
  const server = await scriptedServer(opts.script ?? {}, '127.0.0.3');
  cleanups.push(() => server.close());
  const extra = [...flags];
  if (opts.policy !== undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'ftpp-rig-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'rig.policy');
    writeFileSync(file, opts.policy);
    extra.push('-f', file);
  }
  const port = await freePort('127.0.0.2');
  const out = parseCommandLine(['-d', '-D', '7', '-b', '127.0.0.2', '-p', String(port), '-a', '127.0.0.5', '-R', '127.0.0.3', '-P', String(server.port), ...extra]);
  if (!('config' in out)) throw new Error(out.stderr);
  const fw = new FakeFirewall();
  const { log, lines } = memoryLog(7);
  const daemon = new Daemon({ config: out.config, log, firewall: fw, unprivileged: true });
  await daemon.start();
  cleanups.push(() => daemon.stop());
  const connectFrom = async (from = '127.0.0.4'): Promise<LineClient> => {
    const s = connect({ port, host: '127.0.0.2', localAddress: from });
    await once(s, 'connect');
    const c = new LineClient(s);
    cleanups.push(() => c.close());
    return c;
  };
  return {
    daemon,
    fw,
    lines,
    server,
    port,
    connect: connectFrom,
    async loggedIn(from) {
      const c = await connectFrom(from);
      const greeting = await c.next();
      if (!greeting?.startsWith('220')) throw new Error(`greeting: ${greeting}`);
      c.send('USER lab\r\nPASS lab\r\n');
      await c.next();
      const in230 = await c.next();
      if (!in230?.startsWith('230')) throw new Error(`login: ${in230}`);
      return c;
    },
    async close() {
      for (const c of cleanups.splice(0).reverse()) await c();
    },
  };
}
