#!/usr/bin/env node
// A small FTP server for the benchmark: one process, no pause between sessions (proftpd's parent sleeps
// about 0.4 s after each child exits), thousands of idle sessions at little cost. It speaks just enough
// FTP for the bench clients: USER, PASS, TYPE, SYST, NOOP, PASV, EPSV, PORT, EPRT, RETR, QUIT.
// RETR <n> sends n bytes (any name without digits: 1024). Any login is accepted.
//
//   stub-ftpd.mjs ADDR[,ADDR...] PORT     prints "ready" on stdout once it listens on every address
import net from 'node:net';

const [addrs = '127.0.0.1', portArg = '21'] = process.argv.slice(2);
const port = Number(portArg);
const payloads = new Map();
const payload = (n) => {
  let b = payloads.get(n);
  if (!b) payloads.set(n, (b = Buffer.alloc(n, 0x61)));
  return b;
};

function session(sock) {
  sock.setNoDelay(true);
  sock.on('error', () => undefined);
  let buf = '';
  let pasv = null; // { server, conn, waiter }
  let active = null; // { host, port }
  const reply = (s) => {
    if (!sock.destroyed) sock.write(`${s}\r\n`);
  };
  const closePasv = () => {
    if (pasv) {
      pasv.server.close();
      pasv.conn?.destroy();
      pasv = null;
    }
  };
  const openPasv = (cb) => {
    closePasv();
    const p = { server: net.createServer(), conn: null, waiter: null };
    p.server.on('connection', (c) => {
      c.on('error', () => undefined);
      p.server.close();
      if (p.waiter) p.waiter(c);
      else p.conn = c;
    });
    p.server.on('error', () => undefined);
    p.server.listen(0, sock.localAddress, () => cb(p.server.address().port));
    pasv = p;
  };
  const dataConn = (cb) => {
    if (pasv) {
      const p = pasv;
      pasv = null;
      if (p.conn) cb(p.conn);
      else p.waiter = cb;
      return true;
    }
    if (active) {
      const c = net.connect(active.port, active.host);
      c.on('error', () => undefined);
      c.once('connect', () => cb(c));
      active = null;
      return true;
    }
    return false;
  };
  const line = (l) => {
    const sp = l.indexOf(' ');
    const verb = (sp < 0 ? l : l.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : l.slice(sp + 1);
    switch (verb) {
      case 'USER':
        return reply('331 Password required.');
      case 'PASS':
        return reply('230 Logged in.');
      case 'TYPE':
        return reply('200 Type set.');
      case 'SYST':
        return reply('215 UNIX Type: L8');
      case 'NOOP':
        return reply('200 OK.');
      case 'QUIT':
        reply('221 Goodbye.');
        closePasv();
        sock.end();
        return;
      case 'PASV':
        return openPasv((p) => reply(`227 Entering Passive Mode (${sock.localAddress.replace(/^::ffff:/, '').split('.').join(',')},${p >> 8},${p & 255}).`));
      case 'EPSV':
        return openPasv((p) => reply(`229 Entering Extended Passive Mode (|||${p}|)`));
      case 'PORT': {
        const n = arg.split(',').map(Number);
        if (n.length !== 6 || n.some((x) => !(x >= 0 && x <= 255))) return reply('501 Bad PORT.');
        closePasv();
        active = { host: n.slice(0, 4).join('.'), port: n[4] * 256 + n[5] };
        return reply('200 PORT command successful.');
      }
      case 'EPRT': {
        const m = /^\|[12]\|([^|]+)\|(\d+)\|$/.exec(arg);
        if (!m) return reply('501 Bad EPRT.');
        closePasv();
        active = { host: m[1], port: Number(m[2]) };
        return reply('200 EPRT command successful.');
      }
      case 'RETR': {
        const size = /^\d+$/.test(arg) ? Number(arg) : 1024;
        const ok = dataConn((c) => {
          reply('150 Opening BINARY mode data connection.');
          c.end(payload(size), () => reply('226 Transfer complete.'));
        });
        if (!ok) reply('425 Use PORT or PASV first.');
        return;
      }
      default:
        return reply('502 Command not implemented.');
    }
  };
  sock.setEncoding('latin1');
  sock.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      line(buf.slice(0, nl).replace(/\r$/, ''));
      buf = buf.slice(nl + 1);
    }
    if (buf.length > 4096) sock.destroy();
  });
  sock.on('close', closePasv);
  reply('220 bench stub ready.');
}

const list = addrs.split(',');
let up = 0;
for (const a of list) {
  const srv = net.createServer(session);
  srv.on('error', (e) => {
    process.stderr.write(`stub-ftpd: ${a} port ${port}: ${e.message}\n`);
    process.exit(1);
  });
  srv.listen({ host: a, port, backlog: 4096 }, () => {
    if (++up === list.length) process.stdout.write('ready\n');
  });
}
process.on('SIGTERM', () => process.exit(0));
