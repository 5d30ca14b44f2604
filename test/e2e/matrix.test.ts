// The core matrix: each shipped nftables example loaded as shipped on a default-deny firewall, the proxy
// with its default flags (plus -R/-P in reverse mode), proftpd on the server, lftp, curl and tnftp on the
// client. Every transfer is 20 MiB with its sha256 checked, and after every session the firewall must
// hold no pinhole element.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { type Backend, EXAMPLES, Lab, type Mode, type ProxyProcess, requireLab, ROOT } from './lab.js';

type Client = 'lftp' | 'curl' | 'tnftp';
type DataMode = 'pasv' | 'epsv' | 'port' | 'eprt';

const TRANSFERS: [Client, DataMode][] = [
  ['lftp', 'pasv'],
  ['curl', 'pasv'],
  ['lftp', 'epsv'],
  ['curl', 'epsv'],
  ['lftp', 'port'],
  ['curl', 'port'],
  ['curl', 'eprt'],
  ['tnftp', 'pasv'],
  ['tnftp', 'port'],
];

interface Setup {
  name: string;
  mode: Mode;
  backend: Backend;
  /** iptables variant for the ruleset and the proxy (FTP_PROXY_IPTABLES). */
  iptables?: string;
  ruleset: string;
  args: string[];
}

const NFT = `${EXAMPLES}`;
const IPT = `${ROOT}iptables-examples/`;
const SETUPS: Setup[] = [
  { name: 'nftables, forward, DNAT interception', mode: 'forward', backend: 'nftables', ruleset: `${NFT}forward-redirect.nft`, args: [] },
  { name: 'nftables, forward, tproxy interception', mode: 'forward', backend: 'nftables', ruleset: `${NFT}forward-tproxy.nft`, args: [] },
  { name: 'nftables, reverse (-R -P)', mode: 'reverse', backend: 'nftables', ruleset: `${NFT}reverse.nft`, args: ['-R', '10.0.0.21', '-P', '21'] },
];
for (const variant of ['iptables-nft', 'iptables-legacy']) {
  // iptables-legacy where the machine has it (Debian's iptables package ships both).
  if (variant === 'iptables-legacy' && !existsSync('/usr/sbin/iptables-legacy')) continue;
  SETUPS.push(
    { name: `${variant}, forward, DNAT interception`, mode: 'forward', backend: 'iptables', iptables: variant, ruleset: `${IPT}forward-redirect.rules`, args: ['--backend', 'iptables'] },
    { name: `${variant}, forward, tproxy interception`, mode: 'forward', backend: 'iptables', iptables: variant, ruleset: `${IPT}forward-tproxy.rules`, args: ['--backend', 'iptables'] },
    { name: `${variant}, reverse (-R -P)`, mode: 'reverse', backend: 'iptables', iptables: variant, ruleset: `${IPT}reverse.rules`, args: ['--backend', 'iptables', '-R', '10.0.0.21', '-P', '21'] },
  );
}

beforeAll(requireLab);

describe.each(SETUPS)('$name', ({ mode, backend, iptables, ruleset, args }) => {
  let lab: Lab;
  let proxy: ProxyProcess;

  beforeAll(async () => {
    lab = await Lab.up(mode);
    if (iptables) lab.iptables = iptables;
    await lab.loadRuleset(ruleset);
  });
  afterAll(async () => {
    await lab?.down();
  });

  it('control: without the proxy the transfer fails (the firewall really is default-deny)', async () => {
    const r = await lab.get('curl', 'pasv', 'small.txt', { TMO: '2', MAXT: '5' });
    expect(r.ok, r.output).toBe(false);
  });

  it('control: a data port the proxy did not open stays closed with the proxy running', async () => {
    proxy = await lab.proxy(['-D', '7', ...args], iptables ? { FTP_PROXY_IPTABLES: iptables } : {});
    // A listener on the inside that no negotiation names, dialled from outside: the firewall must drop
    // the SYN. (Forward mode: the LAN client's, as the examples let the LAN out; reverse: the server's.)
    const [inside, outside, address] = mode === 'forward' ? (['cli', 'srv', lab.clientAddress] as const) : (['srv', 'cli', lab.serverAddress] as const);
    const listener = lab.spawn(inside, [process.execPath, '-e', `require('net').createServer(s=>s.end('open\\n')).listen(50999,'${address}')`]);
    await new Promise((r) => setTimeout(r, 300));
    const probe = await lab.exec(outside, ['curl', '-s', '--connect-timeout', '2', `telnet://${address}:50999`], { reject: false, timeout: 10_000 });
    listener.kill();
    expect(probe.stdout).not.toContain('open');
    expect(probe.exitCode).not.toBe(0);
  });

  it.each(TRANSFERS)('%s %s: 20 MiB, sha256 equal, no pinhole left', async (client, dataMode) => {
    const r = await lab.get(client, dataMode);
    expect(r.ok, `${r.output}\n--- proxy log ---\n${proxy.log.split('\n').slice(-30).join('\n')}`).toBe(true);
    expect(await lab.waitNoPinholeObjects(backend)).toBe(0);
  });

  it('logged what OpenBSD logs for these sessions', async () => {
    expect(proxy.log).toMatch(/^listening on 127\.0\.0\.1 port 8021$/m);
    expect(proxy.log).toMatch(/^#\d+ FTP session 1\/100 started: client \d+\.\d+\.\d+\.\d+ to server \d+\.\d+\.\d+\.\d+ via proxy \d+\.\d+\.\d+\.\d+$/m);
    expect(proxy.log).toMatch(/^#\d+ passive: client to server port \d+ via port \d+$/m);
    expect(proxy.log).toMatch(/^#\d+ active: server to client port \d+ via port \d+$/m);
    expect(proxy.log).toMatch(/^#\d+ proxy: 227 Entering Passive Mode \(\d+,\d+,\d+,\d+,\d+,\d+\)\\r\\n$/m);
    expect(proxy.log).toMatch(/^#\d+ ending session$/m);
    expect(proxy.log).not.toMatch(/operation failed|rule removal failed/);
  });

  it('SIGTERM: "exiting on signal 15", status 0, and nothing of the proxy is left in the firewall', async () => {
    expect(await lab.proxyObjects(backend)).toBe(true);
    expect(await proxy.signal('SIGTERM')).toBe(0);
    expect(proxy.log).toMatch(/^exiting on signal 15$/m);
    expect(await lab.proxyObjects(backend)).toBe(false);
  });
});
