// A network process that has been compromised: it speaks the privsep protocol (src/privsep/protocol.ts)
// and asks the privileged process for what it should never get, then for one sound pinhole, and prints
// every answer as a JSON line ("answer <name> <json>"). Started by the privileged process, like the real one.
const pending = new Map();
let next = 1;
let server = null;
const ask = (m) =>
  new Promise((resolve) => {
    const id = next++;
    pending.set(id, resolve);
    process.send({ ...m, id });
  });
process.on('message', (m, handle) => {
  if (m.op === 'hello') return void run(m.name);
  if (typeof m.id === 'number') {
    if (handle) server = handle;
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  }
});
const say = (name, a) => process.stdout.write(`answer ${name} ${JSON.stringify(a)}\n`);

async function run() {
  say('bind-other', await ask({ op: 'bind', host: '0.0.0.0', port: 22 }));
  say('bind', await ask({ op: 'bind', host: '127.0.0.1', port: 8021 }));
  say('bind-again', await ask({ op: 'bind', host: '127.0.0.1', port: 8021 }));
  server?.close();
  const init = await ask({ op: 'init' });
  say('init', init);
  const owner = { instance: init.instance, session: 1 };
  // C 192.168.1.10 (the lab's client), S 198.51.100.21, P 198.51.100.1 (the firewall's address towards S)
  const good = { family: 4, kind: 'passive', from: '192.168.1.10', to: '198.51.100.21', toPort: 50000, rdrTo: '198.51.100.21', rdrPort: 40000, natFrom: '198.51.100.1' };
  const evil = {
    'to-ssh': { op: 'replace', owner, pinholes: [{ ...good, rdrPort: 22 }] },
    'foreign-owner': { op: 'replace', owner: { instance: 'deadbeef', session: 1 }, pinholes: [good] },
    'family-mix': { op: 'replace', owner, pinholes: [{ ...good, rdrTo: '2001:db8::21' }] },
    'nat-from-elsewhere': { op: 'replace', owner, pinholes: [{ ...good, natFrom: '203.0.113.99' }] },
    'rule-text': { op: 'replace', owner, pinholes: [{ ...good, comment: '"; flush ruleset; "' }] },
    'many': { op: 'replace', owner, pinholes: Array.from({ length: 1000 }, (_, i) => ({ ...good, toPort: 50001 + i })) },
    'garbage': { op: 'exec', command: '/bin/sh -c id' },
  };
  for (const [name, m] of Object.entries(evil)) say(name, await ask(m));
  say('good', await ask({ op: 'replace', owner, pinholes: [good] }));
  process.send({ op: 'ready' });
}
process.on('disconnect', () => process.exit(0));
process.send({ op: 'hello' });
