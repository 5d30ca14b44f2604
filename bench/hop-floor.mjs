#!/usr/bin/env node
// node bench/hop-floor.mjs LISTEN_PORT SERVER_PORT: the floor of a Node.js hop, for bench/hop.mjs. A TCP
// relay on 127.0.0.1 that writes every chunk read on one side to the other (no lines, no state machine),
// with the daemon host's node flags. Prints "listening on" when ready; exits when stdin closes.
import net from 'node:net';

const [lport, rport] = process.argv.slice(2).map(Number);
net
  .createServer((c) => {
    c.setNoDelay(true);
    const u = net.connect(rport, '127.0.0.1');
    u.setNoDelay(true);
    c.on('data', (d) => u.write(d));
    u.on('data', (d) => c.write(d));
    c.on('error', () => undefined);
    u.on('error', () => undefined);
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
  })
  .listen(lport, '127.0.0.1', () => process.stderr.write('listening on 127.0.0.1\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
