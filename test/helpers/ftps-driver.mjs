// A small FTPS client for the TLS lab (test code, not the proxy): it speaks FTP over TLS to a real
// server through the proxy's server-leg code (dist/tls/server-leg.js), so a strict server judges that
// code's session resumption. One JSON line out:
//   { ok, control: {version, cipher}, tickets, transfers: [{reused, bytes, sha256, reply}], replies, error }
// usage: node ftps-driver.mjs '<json options>'
//   options: host, port, implicit, minVersion, maxVersion, caFile, servername, verify (default true),
//            user, pass, files (downloaded in order), resume (default true), epsv, follow (also take
//            the data connections' tickets), ticket (offer the n-th control ticket, -1 the last),
//            active + localAddress (PORT: the server connects, the driver is still the TLS client),
//            uploads ([[remote name, local file], ...], STOR by PASV after the downloads)
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { ServerLeg } from '../../dist/tls/server-leg.js';
import { replyReader as replies } from './ftp-replies.mjs';

const o = JSON.parse(process.argv[2] ?? '{}');
const out = { ok: false, replies: [], transfers: [] };
const finish = (extra = {}) => {
  Object.assign(out, extra);
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
};
setTimeout(() => finish({ error: 'driver timeout' }), o.timeoutMs ?? 90_000).unref();

async function main() {
  const tcp = connect({ host: o.host, port: o.port });
  await new Promise((res, rej) => tcp.once('connect', res).once('error', rej));
  const legOpts = {
    host: o.host,
    port: o.port,
    verify: o.verify ?? true,
    ...(o.caFile ? { ca: readFileSync(o.caFile) } : {}),
    ...(o.servername ? { servername: o.servername } : {}),
    ...(o.minVersion ? { minVersion: o.minVersion } : {}),
    ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
    context: 'driver',
  };
  let leg;
  let r;
  if (o.implicit) {
    leg = await ServerLeg.startControl(tcp, legOpts);
    r = replies(leg.control);
    out.replies.push(await r.next());
  } else {
    r = replies(tcp);
    out.replies.push(await r.next());
    tcp.write('AUTH TLS\r\n');
    const a = await r.next();
    out.replies.push(a);
    if (!a.startsWith('234')) return finish({ error: `AUTH TLS: ${a}` });
    r.detach();
    tcp.pause();
    leg = await ServerLeg.startControl(tcp, legOpts);
    r = replies(leg.control);
  }
  const ctl = leg.control;
  out.control = leg.info;
  // every session the server sent on the control connection, for `ticket: n` (which one to offer)
  const all = [];
  ctl.on('session', (s) => all.push(s));
  const cmd = async (line) => {
    ctl.write(`${line}\r\n`);
    const rep = await r.next();
    out.replies.push(`${line.startsWith('PASS') ? 'PASS ***' : line} -> ${rep}`);
    return rep;
  };
  for (const [c, want] of [
    [`USER ${o.user ?? 'anonymous'}`, /^(230|331)/],
    [`PASS ${o.pass ?? 'lab@'}`, /^230/],
    ['PBSZ 0', /^200/],
    ['PROT P', /^200/],
    ['TYPE I', /^200/],
  ]) {
    if (c.startsWith('PASS') && out.replies.at(-1).includes('-> 230')) continue;
    const rep = await cmd(c);
    if (!want.test(rep)) return finish({ error: `${c}: ${rep}` });
  }
  for (const file of o.files ?? []) {
    let dtcp;
    if (o.active) {
      // PORT: the server connects to us; we are still the TLS client (RFC 4217)
      const l = createServer();
      l.listen(0, o.localAddress);
      await once(l, 'listening');
      const lp = l.address().port;
      const accepted = new Promise((res) => l.once('connection', (sock) => (l.close(), res(sock))));
      const p = await cmd(`PORT ${o.localAddress.replaceAll('.', ',')},${lp >> 8},${lp & 255}`);
      if (!/^200/.test(p)) return finish({ error: `PORT: ${p}` });
      ctl.write(`RETR ${file}\r\n`);
      const first = r.next();
      dtcp = await accepted;
      await transfer(file, dtcp, first);
      continue;
    }
    const p = await cmd(o.epsv ? 'EPSV' : 'PASV');
    let port;
    if (o.epsv) port = Number(/\(\|\|\|(\d+)\|\)/.exec(p)?.[1]);
    else {
      const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(p);
      port = m ? Number(m[5]) * 256 + Number(m[6]) : NaN;
    }
    if (!port) return finish({ error: `passive: ${p}` });
    dtcp = connect({ host: o.host, port });
    await new Promise((res, rej) => dtcp.once('connect', res).once('error', rej));
    ctl.write(`RETR ${file}\r\n`);
    await transfer(file, dtcp, r.next());
  }
  // uploads: [remote name, local file]; the data connection ends with close_notify, then FIN
  for (const [name, local] of o.uploads ?? []) {
    const p = await cmd('PASV');
    const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(p);
    if (!m) return finish({ error: `passive: ${p}` });
    const dtcp = connect({ host: o.host, port: Number(m[5]) * 256 + Number(m[6]) });
    await once(dtcp, 'connect');
    ctl.write(`STOR ${name}\r\n`);
    const first = r.next();
    const t = { file: name, upload: true, reused: false, bytes: 0 };
    out.transfers.push(t);
    try {
      const data = await leg.connectData(dtcp);
      t.reused = data.reused;
      const body = readFileSync(local);
      t.bytes = body.length;
      data.socket.on('data', () => undefined);
      data.socket.end(body);
      await once(data.socket, 'close');
    } catch (e) {
      t.dataError = e.message;
    }
    t.reply = await first;
    if (/^1/.test(t.reply)) t.reply = await r.next();
    out.replies.push(`STOR ${name} -> ${t.reply}`);
  }
  out.tickets = leg.sessions.received;
  out.ticketsAfterHandshake = all.length;
  await cmd('QUIT').catch(() => undefined);
  ctl.end();
  finish({ ok: true });

  async function transfer(file, dtcp, first) {
    // vsftpd says 150 before it runs the data handshake; a refusal (522) comes after it.
    const t = { file, reused: false, bytes: 0, sha256: '' };
    out.transfers.push(t);
    let data;
    try {
      data = await leg.connectData(dtcp, o.ticket !== undefined ? all.at(o.ticket) ?? false : o.resume ?? true);
    } catch (e) {
      t.dataError = e.message;
    }
    if (data) {
      t.reused = data.reused;
      t.version = data.socket.getProtocol();
      if (o.follow) leg.sessions.follow(data.socket);
      const h = createHash('sha256');
      await new Promise((res) => {
        data.socket.on('data', (d) => {
          t.bytes += d.length;
          h.update(d);
        });
        data.socket.once('close', res);
        data.socket.once('error', (e) => {
          t.dataError = e.message;
        });
      });
      t.sha256 = h.digest('hex');
    }
    t.reply = await first;
    out.replies.push(`RETR ${file} -> ${t.reply}`);
    if (/^1/.test(t.reply)) {
      t.reply = await r.next();
      out.replies.push(`-> ${t.reply}`);
    }
  }
}

main().catch((e) => finish({ error: `${e.code ? `${e.code}: ` : ''}${e.message}` }));
