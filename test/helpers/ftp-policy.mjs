#!/usr/bin/env node
// A client for the policy end-to-end tests, run in the lab's client namespace. Prints JSON lines.
//
//   ftp-policy.mjs hold-then HOST FLAGFILE LINE...   log in, print {phase:"ready"}, wait until FLAGFILE
//                                                    exists (the test reloads the policy meanwhile), then
//                                                    send each LINE and print {replies}
//   ftp-policy.mjs bytes HOST LINE...                after the greeting (no login), send each LINE with
//                                                    \xHH and \r decoded to bytes, CRLF added; print
//                                                    {replies}
import { existsSync } from 'node:fs';
import net from 'node:net';

const [cmd, host, ...rest] = process.argv.slice(2);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

function open(h) {
  return new Promise((resolve, reject) => {
    const s = net.connect(21, h);
    let buf = '';
    const replies = [];
    let wake = null;
    s.setEncoding('latin1');
    s.on('data', (d) => {
      buf += d;
      let m;
      while ((m = /^(\d{3})( [^\n]*\n|-[\s\S]*?\n\1 [^\n]*\n)/.exec(buf))) {
        replies.push(m[0].trim());
        buf = buf.slice(m[0].length);
      }
      wake?.();
    });
    s.on('close', () => wake?.());
    s.on('error', reject);
    s.once('connect', () => {
      const reply = async (ms = 8000) => {
        const end = Date.now() + ms;
        while (!replies.length && !s.destroyed && Date.now() < end) {
          await new Promise((r) => {
            wake = r;
            setTimeout(r, 50);
          });
        }
        return replies.shift() ?? null;
      };
      resolve({ s, reply, cmd: async (line) => (s.write(`${line}\r\n`), reply()) });
    });
  });
}

if (cmd === 'hold-then') {
  const [flag, ...lines] = rest;
  const c = await open(host);
  await c.reply();
  await c.cmd('USER lab');
  await c.cmd('PASS lab');
  out({ phase: 'ready' });
  while (!existsSync(flag)) await new Promise((r) => setTimeout(r, 50));
  const replies = [];
  for (const l of lines) replies.push(await c.cmd(l));
  out({ phase: 'done', replies });
  c.s.destroy();
} else if (cmd === 'bytes') {
  const c = await open(host);
  await c.reply();
  const replies = [];
  for (const l of rest) {
    const bytes = l.replace(/\\x([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16))).replace(/\\r/g, '\r');
    c.s.write(Buffer.from(`${bytes}\r\n`, 'latin1'));
    replies.push(await c.reply());
  }
  out({ replies });
  c.s.destroy();
} else {
  out({ error: `unknown command ${cmd}` });
}
