#!/usr/bin/env node
// The nftables backend (dist/) with its netlink fast path against this network namespace's kernel:
// JSON on stdin {sessions: N, bad: K (0: none)}; gives sessions 1..N one passive pinhole each, makes
// session K's removal fail in the kernel (its dnat element replaced by one holding other data, so the
// removal's `add` of the old one is refused), clears every session in one event-loop turn, and prints
// one JSON line: the fast path's state, the netlink sends of the clears, each clear's outcome, and the
// owned elements left in the table before close(). For test/e2e/nft-batch-clear.test.ts (`ip netns exec`).
import { passivePinhole } from '../../dist/firewall/backend.js';
import { createNftRunner } from '../../dist/firewall/nft-runner.js';
import { NftablesBackend, ownedElements } from '../../dist/firewall/nftables.js';
import { defaultNetlinkSys } from '../../dist/firewall/nfnl/sys.js';

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;
const { sessions, bad } = JSON.parse(input);
const raw = defaultNetlinkSys();
if (!raw) {
  process.stdout.write(`${JSON.stringify({ error: 'libc could not be loaded through koffi' })}\n`);
  process.exit(1);
}
let sends = 0;
const sys = { ...raw, send: (fd, buf) => (sends++, raw.send(fd, buf)) };
const runner = createNftRunner();
const warnings = [];
const b = new NftablesBackend({ rules: { log: 0, timeout: 30 }, runner, netlink: sys, warn: (m) => warnings.push(m) });
const ends = (n) => ({ family: 4, client: `192.0.2.${n}`, originalServer: '198.51.100.20', server: '198.51.100.20', proxy: '203.0.113.1' });
const owner = (n) => ({ instance: b.instance, session: n });
try {
  await b.init();
  for (let n = 1; n <= sessions; n++) await b.replace(owner(n), [passivePinhole(ends(n), 21000, 50000 + n)]);
  if (bad) {
    const k = `192.0.2.${bad} . 198.51.100.20 . ${50000 + bad}`;
    await runner.run(`delete element inet ftp-proxy dnat4 { ${k} }\nadd element inet ftp-proxy dnat4 { ${k} timeout 30s comment "${b.instance}.${bad}" : 198.51.100.99 . 1 }\n`);
  }
  const before = sends;
  const results = await Promise.allSettled(Array.from({ length: sessions }, (_, i) => b.clear(owner(i + 1))));
  const clearSends = sends - before;
  const left = ownedElements(await runner.json('list table inet ftp-proxy')).map((e) => ({ object: e.object, session: e.session }));
  process.stdout.write(
    `${JSON.stringify({ fast: b.fastPath, clearSends, results: results.map((r) => (r.status === 'fulfilled' ? 'ok' : String(r.reason?.message ?? r.reason))), left, warnings })}\n`,
  );
} catch (e) {
  process.stdout.write(`${JSON.stringify({ error: String(e?.stack ?? e) })}\n`);
} finally {
  await b.close();
}
