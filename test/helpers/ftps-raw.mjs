#!/usr/bin/env node
// A raw FTP client for the FTPS end-to-end tests: what no real client sends (commands before AUTH in a
// chosen order, garbage where a ClientHello belongs). One JSON line out:
//   { replies: [...], closed, closedAfterMs, error }
// usage: node ftps-raw.mjs '<json>'  with host, port, greeting (default true: read the 220 first) and
//   steps: [{ line: "USER x" } (send, read one reply) | { bytes: "<hex>" } (send raw bytes, read nothing)
//           | { close: ms } (wait up to ms for the other side to close the connection)]
import net from 'node:net';
import { replyReader } from './ftp-replies.mjs';

const o = JSON.parse(process.argv[2] ?? '{}');
const out = { replies: [], closed: false };
const done = (extra = {}) => {
  process.stdout.write(`${JSON.stringify({ ...out, ...extra })}\n`);
  process.exit(0);
};
setTimeout(() => done({ error: 'timeout' }), o.timeoutMs ?? 30_000).unref();

const sock = net.connect({ host: o.host, port: o.port ?? 21 });
const t0 = Date.now();
let closeWaiter = null;
const replies = replyReader(sock);
sock.on('error', (e) => {
  out.socketError = e.code ?? e.message;
});
sock.on('close', () => {
  out.closed = true;
  out.closedAfterMs = Date.now() - t0;
  closeWaiter?.();
});
const reply = () => replies.next();

sock.once('connect', async () => {
  if (o.greeting !== false) out.replies.push(await reply());
  for (const s of o.steps ?? []) {
    if (s.line !== undefined) {
      sock.write(`${s.line}\r\n`);
      out.replies.push(`${s.line} -> ${await reply()}`);
    } else if (s.bytes !== undefined) {
      sock.write(Buffer.from(s.bytes, 'hex'));
    } else if (s.close !== undefined) {
      if (!out.closed) {
        await new Promise((r) => {
          closeWaiter = r;
          setTimeout(r, s.close);
        });
      }
    }
  }
  sock.destroy();
  done();
});
