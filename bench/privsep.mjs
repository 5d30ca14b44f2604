#!/usr/bin/env node
// node bench/privsep.mjs [--calls N] [--rounds R]   (after npm run build; no root, no lab)
//
// What privilege separation costs per negotiation: the network process's firewall call goes over the
// IPC channel to the privileged process, is checked there (src/privsep/validate.ts, the host-address
// lookup included) and answered. Measured with the daemon's own classes, the firewall replaced by one
// that does nothing so that only the split's share remains: a replace() through the stub (split)
// against the same replace() in the network process itself (one process). Rounds alternate. A third
// row is the floor: the same message echoed by the other process at once (no stub, no checks, no fake).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const CALLS = opt('--calls', 5000);
const ROUNDS = opt('--rounds', 5);

/** A firewall that does nothing (the fake one records every call: its garbage would be measured too). */
const noop = () => ({ name: 'noop', instance: '0000beef', init: async () => {}, replace: async () => {}, clear: async () => {}, close: async () => {} });
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
  const echoes = new Map();
  process.on('message', (m) => (m.echo ? echoes.get(m.id)?.() : stub.answer(m)));
  let echoId = 0;
  /** The bare round trip: a replace-sized message out, an answer back. */
  const echo = {
    replace: (owner, pinholes) =>
      new Promise((resolve) => {
        const id = ++echoId;
        echoes.set(id, () => {
          echoes.delete(id);
          resolve();
        });
        process.send({ op: 'echo', id, owner, pinholes });
      }),
  };
  const init = stub.init();
  await init;
  const local = noop();
  const owner = { instance: stub.instance, session: 1 };
  await time(stub, owner); // warm-up
  await time(local, owner);
  await time(echo, owner);
  const out = { split: [], single: [], echo: [] };
  for (let r = 0; r < ROUNDS; r++) {
    out.split.push(...(await time(stub, owner)));
    out.single.push(...(await time(local, owner)));
    out.echo.push(...(await time(echo, owner)));
  }
  process.send({ op: 'result', out });
} else {
  // The privileged process: the request handler the daemon uses, over the fake firewall.
  const { RequestHandler, localCache } = await import('../dist/privsep/apply.js');
  const { memoryLog } = await import('../dist/log.js');
  const fw = noop();
  const h = new RequestHandler(fw, { port20: false, maxHolders: 100, isLocal: localCache() }, memoryLog().log);
  const child = fork(fileURLToPath(import.meta.url), ['--child', ...argv], { serialization: 'json' });
  child.on('message', async (m) => {
    if (m.op === 'init') return child.send({ id: m.id, ok: true, instance: fw.instance });
    if (m.op === 'echo') return child.send({ id: m.id, echo: true });
    if (m.op === 'result') {
      const f = (x) => x.toFixed(4);
      const { split, single, echo } = m.out;
      const row = (name, xs) => `${name.padEnd(34)} p50 ${f(quantile(xs, 0.5))} ms   p99 ${f(quantile(xs, 0.99))} ms   mean ${f(xs.reduce((a, b) => a + b, 0) / xs.length)} ms`;
      console.log(`${CALLS * ROUNDS} replace() calls each, ${ROUNDS} alternating rounds`);
      console.log(row('one process (no-op firewall)', single));
      console.log(row('split: stub -> IPC -> check -> no-op', split));
      console.log(row('floor: bare IPC echo, same message', echo));
      console.log(`cost of the split per negotiation: p50 ${f(quantile(split, 0.5) - quantile(single, 0.5))} ms (target <= 0.05 ms)`);
      child.kill();
      return;
    }
    child.send(await h.handle(m.id, m));
  });
}
