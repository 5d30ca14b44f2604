#!/usr/bin/env node
// node bench/privsep.mjs [--calls N] [--rounds R]   (after npm run build; no root, no lab)
//
// What privilege separation costs per negotiation: the network process's firewall call goes over the
// IPC channel to the privileged process, is checked there (src/privsep/validate.ts, the host-address
// lookup included) and answered. Measured with the daemon's own classes, the firewall replaced by the
// in-memory fake so that only the split's share remains: a replace() through the stub (split) against
// the same replace() on the fake in the network process itself (one process). Rounds alternate the two.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const CALLS = opt('--calls', 5000);
const ROUNDS = opt('--rounds', 5);

const { FakeFirewall } = await import('../dist/firewall/fake.js');
const { passivePinhole } = await import('../dist/firewall/backend.js');

/** One negotiation's pinhole, as a session makes it (the proxy's address: this host's loopback). */
const pinhole = (pp) =>
  passivePinhole({ family: 4, client: '192.0.2.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '127.0.0.1' }, 40000, pp);

const quantile = (xs, q) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function time(fw, owner) {
  const ms = [];
  for (let i = 0; i < CALLS; i++) {
    const t = process.hrtime.bigint();
    await fw.replace(owner, [pinhole(49152 + (i % 16000))]);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return ms;
}

if (process.argv[2] === '--child') {
  // The network process: the stub, and for comparison the fake in-process.
  const { PrivsepFirewall } = await import('../dist/privsep/client.js');
  const stub = new PrivsepFirewall({ send: (m) => process.send(m) });
  process.on('message', (m) => stub.answer(m));
  const init = stub.init();
  await init;
  const local = new FakeFirewall();
  const owner = { instance: stub.instance, session: 1 };
  await time(stub, owner); // warm-up
  await time(local, owner);
  const out = { split: [], single: [] };
  for (let r = 0; r < ROUNDS; r++) {
    out.split.push(...(await time(stub, owner)));
    out.single.push(...(await time(local, owner)));
  }
  process.send({ op: 'result', out });
} else {
  // The privileged process: the request handler the daemon uses, over the fake firewall.
  const { RequestHandler, localCache } = await import('../dist/privsep/apply.js');
  const { memoryLog } = await import('../dist/log.js');
  const fw = new FakeFirewall();
  const h = new RequestHandler(fw, { port20: false, maxHolders: 100, isLocal: localCache() }, memoryLog().log);
  const child = fork(fileURLToPath(import.meta.url), ['--child', ...argv], { serialization: 'json' });
  child.on('message', async (m) => {
    if (m.op === 'init') return child.send({ id: m.id, ok: true, instance: fw.instance });
    if (m.op === 'result') {
      const f = (x) => x.toFixed(4);
      const { split, single } = m.out;
      const row = (name, xs) => `${name.padEnd(34)} p50 ${f(quantile(xs, 0.5))} ms   p99 ${f(quantile(xs, 0.99))} ms   mean ${f(xs.reduce((a, b) => a + b, 0) / xs.length)} ms`;
      console.log(`${CALLS * ROUNDS} replace() calls each, ${ROUNDS} alternating rounds`);
      console.log(row('one process (fake firewall)', single));
      console.log(row('split: stub -> IPC -> check -> fake', split));
      console.log(`cost of the split per negotiation: p50 ${f(quantile(split, 0.5) - quantile(single, 0.5))} ms (target <= 0.05 ms)`);
      child.kill();
      return;
    }
    child.send(await h.handle(m.id, m));
  });
}
