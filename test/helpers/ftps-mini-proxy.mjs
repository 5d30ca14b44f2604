// A minimal FTPS-terminating relay for the TLS lab (test code, NOT the proxy): the proxy's TLS parts,
// ClientLeg, ServerLeg and relay() from dist/, joined by the least FTP that curl, lftp and ftplib need,
// so a real client and a strict real server judge both legs and the relay together before they are
// integrated into Session. Passive mode only (PASV/EPSV to the client; PASV to the server), one
// command at a time. Each data relay prints one JSON line: { data: { clientReused, serverReused,
// clientVersion, serverVersion, toClient, toServer, error } }.
// usage: node ftps-mini-proxy.mjs '{"listen":"192.168.1.1","port":2100,"server":"198.51.100.21",
//          "serverPort":2121,"cert":FILE,"key":FILE,"caFile":FILE,"maxVersion":"TLSv1.3"}'
import { readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { once } from 'node:events';
import { ClientLeg } from '../../dist/tls/client-leg.js';
import { ServerLeg } from '../../dist/tls/server-leg.js';
import { relay } from '../../dist/data/tls-relay.js';

const o = JSON.parse(process.argv[2]);
const say = (x) => process.stdout.write(`${JSON.stringify(x)}\n`);
const versions = { ...(o.minVersion ? { minVersion: o.minVersion } : {}), ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}) };

/** Lines from a socket; `take()` detaches and returns what was read past the last line. */
function lines(sock) {
  let buf = Buffer.alloc(0);
  const queue = [];
  const waiters = [];
  const onData = (d) => {
    buf = Buffer.concat([buf, d]);
    let nl;
    while ((nl = buf.indexOf(10)) >= 0) {
      const l = buf.subarray(0, nl + 1).toString('latin1');
      buf = buf.subarray(nl + 1);
      if (waiters.length) waiters.shift()(l);
      else queue.push(l);
    }
  };
  sock.on('data', onData);
  sock.on('close', () => {
    while (waiters.length) waiters.shift()(null);
  });
  return {
    next: () => new Promise((r) => (queue.length ? r(queue.shift()) : sock.destroyed ? r(null) : waiters.push(r))),
    take: () => {
      sock.removeListener('data', onData);
      sock.pause();
      return buf;
    },
  };
}

/** One whole reply (multi-line too) as raw text, and its code (0: the connection closed). */
async function reply(r) {
  let text = '';
  let code = null;
  for (;;) {
    const l = await r.next();
    if (l === null) return { code: 0, text };
    text += l;
    if (code === null) {
      const m = /^(\d{3})([ -]|\r?\n)/.exec(l);
      if (!m) continue;
      code = m[1];
      if (m[2] !== '-') return { code: Number(code), text };
    } else if (l.startsWith(`${code} `)) return { code: Number(code), text };
  }
}

async function session(client) {
  client.on('error', () => undefined);
  const server = connect(o.serverPort, o.server);
  server.on('error', () => undefined);
  await once(server, 'connect');
  let c = client;
  let s = server;
  let cr = lines(c);
  let sr = lines(s);
  const leg = new ClientLeg({
    credentials: { cert: readFileSync(o.cert), key: readFileSync(o.key) },
    ...versions,
    context: 'mini',
    ...(o.ticketSettleMs !== undefined ? { ticketSettleMs: o.ticketSettleMs } : {}),
  });
  let sleg = null;
  let prot = 'C';
  let pending = null;
  c.write((await reply(sr)).text);
  for (;;) {
    const line = await cr.next();
    if (line === null) break;
    const verb = line.trim().split(' ')[0].toUpperCase();
    if (verb === 'AUTH') {
      s.write('AUTH TLS\r\n');
      const a = await reply(sr);
      if (a.code !== 234) {
        c.write(a.text);
        continue;
      }
      sr.take();
      sleg = await ServerLeg.startControl(s, { host: o.server, port: o.serverPort, verify: true, ca: readFileSync(o.caFile), ...versions, context: 'mini' });
      s = sleg.control;
      sr = lines(s);
      c.write('234 Proceed with negotiation\r\n');
      const head = cr.take();
      c = await leg.startControl(client, head);
      c.on('error', () => undefined);
      cr = lines(c);
      continue;
    }
    if (verb === 'PROT') prot = line.trim().split(' ')[1]?.toUpperCase() === 'P' ? 'P' : 'C';
    if (verb === 'PASV' || verb === 'EPSV') {
      s.write('PASV\r\n');
      const p = await reply(sr);
      const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(p.text);
      if (p.code !== 227 || !m) {
        c.write(p.text);
        continue;
      }
      const sport = Number(m[5]) * 256 + Number(m[6]);
      const l = createServer({ pauseOnConnect: true });
      l.listen(0, o.listen);
      await once(l, 'listening');
      const lport = l.address().port;
      const usePort = prot;
      pending = new Promise((resolve) => {
        l.once('connection', async (dc) => {
          l.close();
          dc.on('error', () => undefined);
          const ds = connect(sport, o.server);
          ds.on('error', () => undefined);
          await once(ds, 'connect');
          try {
            const [cl, sv] = await Promise.all([
              usePort === 'P' ? leg.acceptData(dc) : { socket: dc, reused: false },
              usePort === 'P' && sleg ? sleg.connectData(ds) : { socket: ds, reused: false },
            ]);
            // (getProtocol() is null once a socket is closed)
            const versions = { clientVersion: cl.socket.getProtocol?.(), serverVersion: sv.socket.getProtocol?.() };
            const r = relay(cl.socket, sv.socket, { context: 'mini data' });
            const st = await r.done;
            say({ data: { clientReused: cl.reused, serverReused: sv.reused, ...versions, ...st } });
          } catch (e) {
            say({ data: { error: e.message } });
            dc.destroy();
            ds.destroy();
          }
          resolve();
        });
      });
      c.write(verb === 'EPSV' ? `229 Entering Extended Passive Mode (|||${lport}|)\r\n` : `227 Entering Passive Mode (${o.listen.replaceAll('.', ',')},${lport >> 8},${lport & 255})\r\n`);
      continue;
    }
    s.write(line);
    let r = await reply(sr);
    c.write(r.text);
    while (r.code >= 100 && r.code < 200) {
      r = await reply(sr);
      c.write(r.text);
    }
    if (verb === 'QUIT' || r.code === 0) break;
  }
  await pending;
  c.end();
  s.end();
}

const srv = createServer((client) => session(client).catch((e) => say({ error: e.message })));
srv.listen(o.port, o.listen, () => say({ listening: o.port }));
