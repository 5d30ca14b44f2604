#!/usr/bin/env node
// Applies element ops (JSON on stdin: ElementOp[]) to table inet ftp-proxy of this network namespace
// through the nftables backend's netlink fast path (dist/), and prints one JSON line: {"ok":true} or
// {"error":NAME,"message":TEXT}. For test/e2e/nfnl.test.ts, run with `ip netns exec`.
import { NfnlSocket } from '../../dist/firewall/nfnl/socket.js';
import { defaultNetlinkSys } from '../../dist/firewall/nfnl/sys.js';

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;
const sys = defaultNetlinkSys();
if (!sys) {
  process.stdout.write(`${JSON.stringify({ error: 'NoLibc', message: 'libc could not be loaded through koffi' })}\n`);
  process.exit(1);
}
const socket = new NfnlSocket(sys, { table: 'inet ftp-proxy' });
try {
  socket.apply(JSON.parse(input));
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
} catch (e) {
  process.stdout.write(`${JSON.stringify({ error: e.name, message: e.message })}\n`);
} finally {
  socket.close();
}
