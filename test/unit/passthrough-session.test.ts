// tls_client passthrough through the daemon (unit rig: loopback, in-memory firewall): AUTH goes to the
// server as sent, its 234 comes back once the range pinhole is in, and from then on the control bytes are
// relayed untouched both ways (nothing after the 234 is read as FTP); the pinhole goes with the session.
// The server is a script that answers AUTH with 234 and then echoes what it gets, marked.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { memoryLog } from '../../src/log.js';
import { freePort } from '../helpers/daemon-rig.js';

/** A server that says 220, answers AUTH with `authReply`, then echoes every byte back after "ECHO:". */
async function blindServer(authReply: string): Promise<{ server: Server; port: number; got: () => Buffer; sockets: Socket[] }> {
  const chunks: Buffer[] = [];
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.write('220 blind ready\r\n');
    let blind = false;
    let buf = '';
    s.on('data', (d: Buffer) => {
      if (blind) {
        chunks.push(d);
        s.write(Buffer.concat([Buffer.from('ECHO:'), d]));
        return;
      }
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl + 1);
      const rest = Buffer.from(buf.slice(nl + 1), 'latin1');
      buf = '';
      if (/^AUTH /i.test(line)) {
        chunks.push(Buffer.from(line, 'latin1'));
        s.write(authReply);
        blind = authReply.startsWith('234');
        if (blind && rest.length) {
          chunks.push(rest);
          s.write(Buffer.concat([Buffer.from('ECHO:'), rest]));
        }
      } else {
        s.write('500 say AUTH first\r\n');
      }
    });
  });
  server.listen(0, '127.0.0.3');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port, got: () => Buffer.concat(chunks), sockets };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ftpp-passthrough-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function rig(authReply: string, policyText = 'tls_client passthrough\ntls_passthrough_ports 50000-50100\n') {
  const srv = await blindServer(authReply);
  const file = join(dir, `p${srv.port}.policy`);
  writeFileSync(file, policyText);
  const port = await freePort('127.0.0.2');
  const out = parseCommandLine(['-d', '-D', '7', '-b', '127.0.0.2', '-p', String(port), '-a', '127.0.0.5', '-R', '127.0.0.3', '-P', String(srv.port), '-f', file]);
  if (!('config' in out)) throw new Error(out.stderr);
  const fw = new FakeFirewall();
  const { log, lines } = memoryLog(7);
  const daemon = new Daemon({ config: out.config, log, firewall: fw, unprivileged: true });
  await daemon.start();
  const s = connect({ port, host: '127.0.0.2', localAddress: '127.0.0.4' });
  s.on('error', () => undefined);
  let got = Buffer.alloc(0);
  s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
  await once(s, 'connect');
  const until = async (text: string, ms = 4000): Promise<string> => {
    const deadline = Date.now() + ms;
    while (!got.toString('latin1').includes(text)) {
      if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)}; have ${JSON.stringify(got.toString('latin1'))}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return got.toString('latin1');
  };
  return {
    s,
    fw,
    lines,
    srv,
    until,
    received: () => got,
    close: async () => {
      s.destroy();
      await daemon.stop();
      for (const x of srv.sockets) x.destroy();
      await new Promise((r) => srv.server.close(r));
    },
  };
}

const rangePinholes = (fw: FakeFirewall) => [...fw.live.values()].flat().filter((p) => p.kind === 'range');

describe('tls_client passthrough through the daemon', () => {
  it('AUTH as sent, 234 after the range pinhole, then every byte untouched both ways; the pinhole goes with the session', async () => {
    const r = await rig('234 AUTH TLS ok\r\n');
    try {
      await r.until('220 blind ready\r\n');
      r.s.write('auth tls\r\n');
      await r.until('234 AUTH TLS ok\r\n');
      // one range pinhole, client -> server, the server's passive range untranslated, from the proxy's address
      expect(rangePinholes(r.fw)).toEqual([
        expect.objectContaining({ kind: 'range', from: '127.0.0.4', toPort: 50000, toPortHigh: 50100, rdrTo: '127.0.0.3', rdrPort: 50000, natFrom: '127.0.0.5' }),
      ]);
      // what looks like TLS, and what looks like FTP commands the proxy would otherwise act on or refuse
      const blob = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0, 1, 2, 0xff, 0x0a]), Buffer.from('PORT 10,0,0,1,4,1\r\nAUTH TLS\r\nSITE \x00\r\n')]);
      r.s.write(blob);
      await r.until('SITE');
      const after = r.received().subarray(r.received().indexOf('ECHO:'));
      expect(after.equals(Buffer.concat([Buffer.from('ECHO:'), blob]))).toBe(true);
      expect(r.srv.got().equals(Buffer.concat([Buffer.from('auth tls\r\n'), blob]))).toBe(true);
      expect(r.lines.join('\n')).toContain('TLS passed through: data ports 50000-50100 open to the server for this session');
      // the client leaves: the session's pinhole goes
      r.s.destroy();
      for (let i = 0; i < 200 && rangePinholes(r.fw).length; i++) await new Promise((x) => setTimeout(x, 10));
      expect(rangePinholes(r.fw)).toEqual([]);
    } finally {
      await r.close();
    }
  });

  it('the server refuses AUTH: no pinhole, the session stays line by line (PORT refused by the proxy, not sent)', async () => {
    const r = await rig('500 no TLS here\r\n');
    try {
      await r.until('220 blind ready\r\n');
      r.s.write('AUTH TLS\r\n');
      await r.until('500 no TLS here\r\n');
      expect(rangePinholes(r.fw)).toEqual([]);
      r.s.write('PORT 127,0,0,4,195,80\r\n');
      await r.until('502 PORT refused');
      expect(r.srv.got().toString('latin1')).toBe('AUTH TLS\r\n');
    } finally {
      await r.close();
    }
  });

  it('no range for this server in the policy: 534 from the proxy, nothing to the server', async () => {
    const r = await rig('234 never\r\n', 'tls_client passthrough\ntls_passthrough_ports 50000-50100 192.0.2.99\n');
    try {
      await r.until('220 blind ready\r\n');
      r.s.write('AUTH TLS\r\n');
      await r.until("534 AUTH refused: no tls_passthrough_ports for this server in the proxy's policy\r\n");
      expect(r.srv.got().length).toBe(0);
    } finally {
      await r.close();
    }
  });

  it('a per-server range wins over the one for every server', async () => {
    const r = await rig('234 ok\r\n', 'tls_client passthrough\ntls_passthrough_ports 40000-40010\ntls_passthrough_ports 50000-50100 127.0.0.3\n');
    try {
      await r.until('220 blind ready\r\n');
      r.s.write('AUTH TLS\r\n');
      await r.until('234 ok\r\n');
      expect(rangePinholes(r.fw).map((p) => [p.toPort, p.toPortHigh])).toEqual([[50000, 50100]]);
    } finally {
      await r.close();
    }
  });

  it('the firewall refuses the range pinhole: 421 and the session ends, the server\'s 234 never reaches the client', async () => {
    const r = await rig('234 go\r\n');
    try {
      await r.until('220 blind ready\r\n');
      r.fw.failWith = 'no room for ranges';
      const closed = once(r.s, 'close');
      r.s.write('AUTH TLS\r\n');
      await r.until('421 ');
      expect(r.received().toString('latin1')).toBe('220 blind ready\r\n421 The firewall refused the TLS pass-through pinhole, closing control connection.\r\n');
      await Promise.race([closed, new Promise((_, no) => setTimeout(() => no(new Error(`still open: ${r.lines.slice(-8).join(' / ')}`)), 4000))]);
    } finally {
      r.fw.failWith = null;
      await r.close();
    }
  });
});
