// A client that never reads while the server floods multi-line replies: the proxy stops reading the
// server (its buffered bytes towards the client stay bounded) and keeps one drain listener per socket,
// however many writes failed and however many negotiations completed meanwhile (issue 11, item 11).
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { memoryLog } from '../../src/log.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HELP_BYTES = 500_000;
const ROUNDS = 40;

/** HELP: a 214 reply of HELP_BYTES in 100-byte lines; PASV: a 227. */
async function floodServer(): Promise<{ port: number; written: () => number }> {
  let written = 0;
  const line = ` ${'x'.repeat(97)}\r\n`;
  const help = `214-flood\r\n${line.repeat(HELP_BYTES / line.length)}214 end\r\n`;
  const srv: Server = createServer((s) => {
    s.on('error', () => undefined);
    s.write('220 ready\r\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const verb = buf.slice(0, nl).trim().split(' ')[0]!.toUpperCase();
        buf = buf.slice(nl + 1);
        const reply = verb === 'HELP' ? help : verb === 'PASV' ? '227 Entering Passive Mode (127,0,0,3,195,80)\r\n' : verb === 'USER' ? '331 pw\r\n' : verb === 'PASS' ? '230 in\r\n' : '200 ok\r\n';
        written += reply.length;
        s.write(reply);
      }
    });
  });
  srv.listen(0, '127.0.0.3');
  await once(srv, 'listening');
  cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
  return { port: (srv.address() as { port: number }).port, written: () => written };
}

/** The proxy-side sockets of the daemon's only session (private fields, read for the measurement). */
function sessionSockets(d: Daemon): { client: Socket; upstream: Socket } {
  const sessions = (d as unknown as { sessions: Set<{ client: Socket; upstream: Socket }> }).sessions;
  const [s] = [...sessions];
  if (!s) throw new Error('no session');
  return s;
}

describe('backpressure', () => {
  it('a client that never reads: bounded buffering towards it, one drain listener per socket', async () => {
    const srv = await floodServer();
    const probe = createServer().listen(0, '127.0.0.2');
    await once(probe, 'listening');
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const out = parseCommandLine(['-d', '-D', '5', '-b', '127.0.0.2', '-p', String(port), '-a', '127.0.0.5', '-R', '127.0.0.3', '-P', String(srv.port)]);
    if (!('config' in out)) throw new Error(out.stderr);
    const daemon = new Daemon({ config: out.config, log: memoryLog(5).log, firewall: new FakeFirewall(), unprivileged: true });
    await daemon.start();
    cleanups.push(() => daemon.stop());

    const c = connect({ port, host: '127.0.0.2', localAddress: '127.0.0.4' });
    cleanups.push(() => void c.destroy());
    await once(c, 'connect');
    // Read the greeting and the login, then never again.
    c.write('USER a\r\nPASS b\r\n');
    let got = '';
    while (!got.includes('230 in\r\n')) got += ((await once(c, 'data')) as [Buffer])[0].toString('latin1');
    c.pause();
    // Every PASV completes a negotiation while the client is full: none of them may resume the server.
    c.write('HELP\r\nPASV\r\n'.repeat(ROUNDS));

    const { client, upstream } = sessionSockets(daemon);
    let maxBuffered = 0;
    let maxDrain = 0;
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      maxBuffered = Math.max(maxBuffered, client.writableLength);
      maxDrain = Math.max(maxDrain, client.listenerCount('drain'), upstream.listenerCount('drain'));
      await new Promise((r) => setTimeout(r, 5));
    }
    // The server did flood (the proxy stops reading the client after 64 pipelined commands, so not all
    // ROUNDS may reach it: a third of them is far beyond any bound).
    expect(srv.written()).toBeGreaterThan((ROUNDS / 3) * HELP_BYTES);
    expect(maxBuffered).toBeLessThan(256 * 1024); // a read chunk and the lines queued behind a negotiation, no more
    expect(maxDrain).toBeLessThanOrEqual(1);
    expect(upstream.isPaused()).toBe(true);
  });
});
