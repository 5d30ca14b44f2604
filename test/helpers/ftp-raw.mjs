#!/usr/bin/env node
// A raw FTP client for the end-to-end tests, run inside the lab's client namespace. It does what lftp and
// curl will not: negotiations with chosen arguments, second connections to a used pinhole, many idle
// sessions, a download that ignores its control connection, random lines. Prints one JSON object.
//
//   ftp-raw.mjs pasv-twice HOST          PASV, then two connections to the port the 227 names
//   ftp-raw.mjs lines HOST LINE...       log in, send each line, collect the replies
//   ftp-raw.mjs sessions HOST N          N sessions, each logged in with a PASV answered; holds them
//   ftp-raw.mjs retr HOST FILE OUT       passive download into OUT; keeps reading if the control dies
//   ftp-raw.mjs active-listen HOST LINE  listen for the server's data connection, send the PORT/EPRT LINE
//                                        (%p is replaced by the port), LIST, report who connected
//   ftp-raw.mjs pasv-wait HOST SECONDS   PASV, wait, then one connection to the port it names
//   ftp-raw.mjs pasv-hold HOST A B       PASV, print {phase:"pasv"}, wait A s, connect to the port it names,
//                                        print {phase:"connected"}, hold both for B s (for `status`)
//   ftp-raw.mjs greet HOST               the first reply (greeting or refusal), and whether it closed
//   ftp-raw.mjs greet-many HOST N        N connections at once: how many got 220, 421, nothing
//   ftp-raw.mjs load HOST SESSIONS TRANSFERS FILE:SHA256...
//                                        concurrent sessions, each TRANSFERS downloads alternating
//                                        passive (PASV) and active (PORT), every sha256 checked
//   ftp-raw.mjs fuzz HOST SECONDS SEED   random and mutated lines over many sessions; PORT and EPRT
//                                        arguments are always invalid, so no active pinhole may result
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import net from 'node:net';

const [cmd, host, ...rest] = process.argv.slice(2);
const out = (o) => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

class Control {
  constructor(sock) {
    this.sock = sock;
    this.buf = '';
    this.replies = [];
    this.waiters = [];
    this.closed = false;
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      this.buf += d;
      let m;
      // whole replies: a final line "ddd " (multi-line replies end with one)
      while ((m = /^(\d{3})( [^\n]*\n|-[\s\S]*?\n\1 [^\n]*\n)/.exec(this.buf))) {
        this.replies.push(m[0]);
        this.buf = this.buf.slice(m[0].length);
      }
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => {});
  }
  static open(h, port = 21) {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, h, () => resolve(new Control(s)));
      s.on('error', reject);
    });
  }
  wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  async reply(ms = 8000) {
    const end = Date.now() + ms;
    while (!this.replies.length) {
      if (this.closed || Date.now() > end) return null;
      await new Promise((r) => {
        const t = setTimeout(r, Math.max(1, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.replies.shift();
  }
  async cmd(line) {
    this.sock.write(`${line}\r\n`);
    return this.reply();
  }
  async login() {
    await this.reply();
    await this.cmd('USER lab');
    return this.cmd('PASS lab');
  }
}

function dial(h, port, ms = 2000) {
  return new Promise((resolve) => {
    const s = net.connect({ host: h, port, timeout: ms });
    s.once('connect', () => resolve({ result: 'connected', sock: s }));
    s.once('timeout', () => {
      s.destroy();
      resolve({ result: 'timeout' });
    });
    s.once('error', (e) => resolve({ result: e.code === 'ECONNREFUSED' ? 'refused' : e.code }));
  });
}

const hostPort227 = (r) => {
  const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(r ?? '');
  return m ? { host: m.slice(1, 5).join('.'), port: Number(m[5]) * 256 + Number(m[6]) } : null;
};

async function main() {
  switch (cmd) {
    case 'pasv-twice': {
      const c = await Control.open(host);
      await c.login();
      const r = await c.cmd('PASV');
      const hp = hostPort227(r);
      if (!hp) return out({ error: `no 227: ${r}` });
      const first = await dial(hp.host, hp.port);
      const second = await dial(hp.host, hp.port);
      out({ reply: r.trim(), port: hp.port, first: first.result, second: second.result });
      first.sock?.destroy();
      second.sock?.destroy();
      c.sock.destroy();
      return;
    }
    case 'pasv-wait': {
      const c = await Control.open(host);
      await c.login();
      const hp = hostPort227(await c.cmd('PASV'));
      if (!hp) return out({ error: 'no 227' });
      await new Promise((r) => setTimeout(r, Number(rest[0]) * 1000));
      const d = await dial(hp.host, hp.port);
      out({ port: hp.port, after: d.result });
      d.sock?.destroy();
      c.sock.destroy();
      return;
    }
    case 'pasv-hold': {
      const c = await Control.open(host);
      await c.login();
      const r = await c.cmd('PASV');
      const hp = hostPort227(r);
      if (!hp) return out({ error: `no 227: ${r}` });
      out({ phase: 'pasv', port: hp.port });
      await new Promise((res) => setTimeout(res, Number(rest[0]) * 1000));
      const d = await dial(hp.host, hp.port);
      out({ phase: 'connected', port: hp.port, result: d.result });
      await new Promise((res) => setTimeout(res, Number(rest[1]) * 1000));
      d.sock?.destroy();
      c.sock.destroy();
      out({ phase: 'done' });
      return;
    }
    case 'greet': {
      const c = await Control.open(host);
      const r = await c.reply(40_000);
      await new Promise((res) => setTimeout(res, 200));
      out({ reply: r?.trim() ?? null, closed: c.closed });
      c.sock.destroy();
      return;
    }
    case 'greet-many': {
      const n = Number(rest[0]);
      const results = await Promise.all(
        Array.from({ length: n }, async () => {
          try {
            const c = await Control.open(host);
            const r = await c.reply(5000);
            return { r, c };
          } catch {
            return { r: null, c: null };
          }
        }),
      );
      const count = (re) => results.filter((x) => re.test(x.r ?? '')).length;
      out({ n, greeted: count(/^220/), refused: count(/^421/), silent: results.filter((x) => !x.r).length });
      for (const x of results) x.c?.sock.destroy();
      return;
    }
    case 'lines': {
      const c = await Control.open(host);
      await c.login();
      const replies = [];
      for (const line of rest) replies.push((await c.cmd(line))?.trim() ?? null);
      out({ replies });
      await c.cmd('QUIT');
      c.sock.destroy();
      return;
    }
    case 'sessions': {
      const n = Number(rest[0]);
      const all = await Promise.all(
        Array.from({ length: n }, async () => {
          const c = await Control.open(host);
          await c.login();
          const r = await c.cmd('PASV');
          return { c, ok: /^227 /.test(r ?? '') };
        }),
      );
      out({ ready: all.filter((x) => x.ok).length });
      setInterval(() => {}, 1000); // hold them until killed
      return;
    }
    case 'retr': {
      const [file, dest, rate] = rest;
      const bytesPerSecond = Number(rate ?? 0);
      const c = await Control.open(host);
      await c.login();
      await c.cmd('TYPE I');
      const hp = hostPort227(await c.cmd('PASV'));
      const d = await dial(hp.host, hp.port);
      if (d.result !== 'connected') return out({ error: d.result });
      const w = createWriteStream(dest);
      // Read slowly when asked, so that a test can act while the transfer runs.
      const t0 = Date.now();
      let got = 0;
      d.sock.on('data', (chunk) => {
        w.write(chunk);
        got += chunk.length;
        if (bytesPerSecond > 0) {
          const ahead = got / bytesPerSecond - (Date.now() - t0) / 1000;
          if (ahead > 0) {
            d.sock.pause();
            setTimeout(() => d.sock.resume(), ahead * 1000);
          }
        }
      });
      c.sock.write(`RETR ${file}\r\n`);
      let controlClosed = false;
      c.sock.on('close', () => {
        controlClosed = true;
      });
      d.sock.on('end', () => w.end());
      w.on('finish', () => {
        out({ done: true, controlClosed });
        process.exit(0);
      });
      return;
    }
    case 'active-listen': {
      const [line] = rest;
      const seen = [];
      const srv = net.createServer((s) => {
        seen.push(`${s.remoteAddress}:${s.remotePort}`);
        s.resume();
      });
      await new Promise((r) => srv.listen(0, '0.0.0.0', r));
      const port = srv.address().port;
      const c = await Control.open(host);
      await c.login();
      const portReply = (await c.cmd(line.replace('%p', String(port)).replace('%hi', String(port >> 8)).replace('%lo', String(port & 255))))?.trim();
      let listReply = null;
      if (/^200/.test(portReply ?? '')) {
        listReply = (await c.cmd('LIST'))?.trim();
        if (/^1/.test(listReply ?? '')) listReply += ` / ${(await c.reply())?.trim()}`;
      }
      out({ port, portReply, listReply, connections: seen });
      c.sock.destroy();
      srv.close();
      return;
    }
    case 'load': {
      const [sessions, transfers, ...files] = rest;
      const wanted = files.map((f) => f.split(':'));
      const result = { sessions: Number(sessions), transfers: 0, ok: 0, badSum: 0, failed: 0, errors: [] };
      const t0 = Date.now();
      const one = async (n) => {
        let c;
        try {
          c = await Control.open(host);
          if (!/^230/.test((await c.login()) ?? '')) throw new Error('login');
          await c.cmd('TYPE I');
          for (let i = 0; i < Number(transfers); i++) {
            const [file, sum] = wanted[(n + i) % wanted.length];
            const active = (n + i) % 2 === 1;
            result.transfers++;
            const hash = createHash('sha256');
            let data;
            if (active) {
              const srv = net.createServer();
              await new Promise((r) => srv.listen(0, '0.0.0.0', r));
              const p = srv.address().port;
              const accepted = new Promise((r) => srv.once('connection', r));
              const local = c.sock.localAddress.replace(/^::ffff:/, '').split('.').join(',');
              if (!/^200/.test((await c.cmd(`PORT ${local},${p >> 8},${p & 255}`)) ?? '')) throw new Error('PORT');
              c.sock.write(`RETR ${file}\r\n`);
              data = await Promise.race([accepted, new Promise((_, j) => setTimeout(() => j(new Error('no active data connection')), 20000).unref())]);
              srv.close();
            } else {
              const hp = hostPort227(await c.cmd('PASV'));
              if (!hp) throw new Error('PASV');
              const d = await dial(hp.host, hp.port, 10000);
              if (d.result !== 'connected') throw new Error(`data ${d.result}`);
              data = d.sock;
              c.sock.write(`RETR ${file}\r\n`);
            }
            await new Promise((resolve, reject) => {
              data.on('data', (b) => hash.update(b));
              data.on('end', resolve);
              data.on('error', reject);
            });
            let r = await c.reply(20000);
            if (/^1/.test(r ?? '')) r = await c.reply(20000);
            if (!/^226/.test(r ?? '')) throw new Error(`RETR: ${r}`);
            if (hash.digest('hex') === sum) result.ok++;
            else result.badSum++;
          }
          await c.cmd('QUIT');
        } catch (e) {
          result.failed++;
          if (result.errors.length < 5) result.errors.push(String(e.message ?? e));
        } finally {
          c?.sock.destroy();
        }
      };
      await Promise.all(Array.from({ length: Number(sessions) }, (_, n) => one(n)));
      out({ ...result, seconds: (Date.now() - t0) / 1000 });
      return;
    }
    case 'fuzz': {
      const [seconds, seed] = rest.map(Number);
      let x = seed || 1;
      const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
      const words = ['PORT', 'EPRT', 'PASV', 'EPSV', 'USER', 'PASS', 'RETR', 'LIST', 'AUTH', 'NOOP', 'ABOR', 'LPRT', 'XYZZY', 'EPSV ALL'];
      const junk = () => {
        const n = Math.floor(rnd() * 80);
        return Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
      };
      const end = Date.now() + seconds * 1000;
      let sessions = 0;
      let bytes = 0;
      const worker = async () => {
        while (Date.now() < end) {
          let c;
          try {
            c = await Control.open(host);
          } catch {
            continue;
          }
          sessions++;
          const k = 5 + Math.floor(rnd() * 40);
          for (let i = 0; i < k && !c.closed; i++) {
            const w = words[Math.floor(rnd() * words.length)];
            const pick = rnd();
            let line;
            if (pick < 0.3) line = Buffer.concat([Buffer.from(`${w} `), junk(), Buffer.from('\r\n')]);
            // a first number of 256 or more: never a valid PORT
            else if (pick < 0.5) line = Buffer.from(`${w} ${[256 + Math.floor(rnd() * 70000), ...Array.from({ length: 5 }, () => Math.floor(rnd() * 70000))].join(",")}\r\n`);
            // an address octet of 256 or more: never a valid EPRT
            else if (pick < 0.6) line = Buffer.from(`${w} |${Math.floor(rnd() * 4)}|${256 + Math.floor(rnd() * 300)}.1.2.3|${Math.floor(rnd() * 99999)}|\r\n`);
            else if (pick < 0.65) line = Buffer.alloc(600, 0x41); // overlong, no newline
            else if (pick < 0.7) line = Buffer.from(`${w}\0x\r\n`);
            else if (pick < 0.75) line = Buffer.from([0xff, 0xf4, 0xff, 0xf2, ...Buffer.from(`${w}\r\n`)]);
            else line = Buffer.from(`${w}\r\n`);
            // split the line at random places, sometimes several in one write
            let off = 0;
            while (off < line.length) {
              const n = 1 + Math.floor(rnd() * line.length);
              c.sock.write(line.subarray(off, off + n));
              off += n;
            }
            bytes += line.length;
            if (rnd() < 0.5) await c.reply(200);
          }
          c.sock.destroy();
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker)); // eight sessions at a time
      out({ sessions, bytes });
      return;
    }
    default:
      out({ error: `unknown command ${cmd}` });
  }
}

main().catch((e) => {
  out({ error: String(e) });
  process.exit(1);
});
