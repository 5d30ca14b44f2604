// IPv6 in namespaces (documentation prefix 2001:db8::/32): EPSV and EPRT through both Linux backends,
// one instance serving IPv4 and IPv6 clients at the same time, and OpenBSD's -6 mode.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, EXAMPLES, Lab, type ProxyProcess, requireLab, ROOT } from './lab.js';

const IPT = `${ROOT}iptables-examples/`;

interface Setup {
  name: string;
  backend: Backend;
  iptables?: string;
  rulesets: string[];
  args: string[];
}

const SETUPS: Setup[] = [
  { name: 'nftables', backend: 'nftables', rulesets: [`${EXAMPLES}forward-dualstack.nft`], args: [] },
  {
    name: 'iptables-nft',
    backend: 'iptables',
    iptables: 'iptables-nft',
    rulesets: [`${IPT}forward-tproxy.rules`, `${IPT}forward-tproxy.v6.rules`],
    args: ['--backend', 'iptables'],
  },
];
if (existsSync('/usr/sbin/iptables-legacy')) {
  SETUPS.push({
    name: 'iptables-legacy',
    backend: 'iptables',
    iptables: 'iptables-legacy',
    rulesets: [`${IPT}forward-tproxy.rules`, `${IPT}forward-tproxy.v6.rules`],
    args: ['--backend', 'iptables'],
  });
}

const V6 = { FAMILY: '6' };

beforeAll(requireLab);

describe.each(SETUPS)('IPv6 with $name', ({ backend, iptables, rulesets, args }) => {
  let lab: Lab;
  let proxy: ProxyProcess;
  const env: Record<string, string> = iptables ? { FTP_PROXY_IPTABLES: iptables } : {};

  beforeAll(async () => {
    lab = await Lab.up('forward');
    if (iptables) lab.iptables = iptables;
    for (const r of rulesets) await lab.loadRuleset(r);
  });
  afterAll(async () => {
    await lab?.down();
  });

  it('control: without the proxy an IPv6 transfer fails', async () => {
    expect((await lab.get('curl', 'epsv', 'small.txt', { ...V6, TMO: '2', MAXT: '5' })).ok).toBe(false);
  });

  it.each([
    ['lftp', 'epsv'],
    ['lftp', 'eprt'],
    ['curl', 'epsv'],
    ['curl', 'eprt'],
    ['tnftp', 'epsv'],
    ['tnftp', 'eprt'],
  ] as const)('a dual-stack instance: %s %s over IPv6, 20 MiB, sha256 equal, no pinhole left', async (client, mode) => {
    proxy ??= await lab.proxy(['-D', '7', '-b', '127.0.0.1', '-b', '::1', ...args], env);
    const r = await lab.get(client, mode, 'test20M.bin', V6);
    expect(r.ok, `${r.output}\n${proxy.log.split('\n').slice(-20).join('\n')}`).toBe(true);
    expect(await lab.waitNoPinholeObjects(backend)).toBe(0);
  });

  it('the same instance serves an IPv4 and an IPv6 client at once', async () => {
    const rate = { RATE: '4M' }; // 20 MiB at 4 MB/s: both transfers overlap for seconds, even on a busy machine
    const [v4, v6] = await Promise.all([lab.get('lftp', 'pasv', 'test20M.bin', rate), lab.get('lftp', 'eprt', 'test20M.bin', { ...rate, ...V6 })]);
    expect(v4.ok, v4.output).toBe(true);
    expect(v6.ok, v6.output).toBe(true);
    expect(proxy.log).toMatch(/FTP session 2\/100 started: client (192\.168\.1\.10|2001:db8:1::10)/);
    expect(proxy.log).toMatch(/started: client 2001:db8:1::10 to server 2001:db8:2::21 via proxy 2001:db8:2::1$/m);
    expect(proxy.log).toMatch(/started: client 192\.168\.1\.10 to server 198\.51\.100\.21 via proxy 198\.51\.100\.1$/m);
    expect(await lab.waitNoPinholeObjects(backend)).toBe(0);
  });

  it('PASV and PORT over IPv6 get an FTP error reply and open nothing', async () => {
    const script = `exec 3<>/dev/tcp/2001:db8:2::21/21; read -r g <&3; printf 'USER lab\\r\\nPASS lab\\r\\nPASV\\r\\nPORT 1,2,3,4,156,187\\r\\nQUIT\\r\\n' >&3; cat <&3`;
    const r = await lab.exec('cli', ['timeout', '5', 'bash', '-c', script], { reject: false });
    expect(r.stdout).toMatch(/^502 PASV not allowed with IPv6, use EPSV\r$/m);
    expect(r.stdout).toMatch(/^502 PORT not allowed with IPv6, use EPRT\r$/m);
    expect(r.stdout).toMatch(/^221 /m);
    expect(proxy.log).toMatch(/^PASV and PORT not allowed with IPv6$/m);
    expect(await lab.waitNoPinholeObjects(backend)).toBe(0);
  });

  it('-6: an IPv6-only instance on ::1, as OpenBSD runs it', async () => {
    await proxy.stop();
    const six = await lab.proxy(['-6', '-D', '6', ...args], env);
    expect(six.log).toMatch(/^listening on ::1 port 8021$/m);
    expect((await lab.get('curl', 'eprt', 'test20M.bin', V6)).ok).toBe(true);
    expect((await lab.get('lftp', 'epsv', 'test20M.bin', V6)).ok).toBe(true);
    // IPv4 clients are intercepted to 127.0.0.1, where nothing listens now.
    expect((await lab.get('curl', 'pasv', 'small.txt', { TMO: '2', MAXT: '5' })).ok).toBe(false);
    expect(await six.signal('SIGTERM')).toBe(0);
    expect(await lab.proxyObjects(backend)).toBe(false);
  });
});

describe('IPv6 behind a REDIRECT (original destination from IP6T_SO_ORIGINAL_DST)', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await Lab.up('forward');
  });
  afterAll(async () => {
    await lab?.down();
  });

  it('finds the server the client dialled and moves 20 MiB both ways', async () => {
    const dir = mkdtempSync(`${tmpdir()}/ftpp-r6-`);
    const file = `${dir}/redirect6.nft`;
    writeFileSync(
      file,
      [
        'flush ruleset',
        'table inet filter {',
        '  chain nat_prerouting { type nat hook prerouting priority dstnat; policy accept;',
        '    iifname "lan" ip6 saddr 2001:db8:1::/64 tcp dport 21 redirect to :8021; }',
        '  chain input { type filter hook input priority filter; policy drop;',
        '    ct state established,related accept; iif "lo" accept; meta l4proto ipv6-icmp accept',
        '    iifname "lan" tcp dport 8021 ct status dnat accept; }',
        '  chain forward { type filter hook forward priority filter; policy drop;',
        '    ct state established,related accept; meta l4proto ipv6-icmp accept; ct status dnat accept; }',
        '}',
        '',
      ].join('\n'),
    );
    try {
      await lab.loadRuleset(file);
      // REDIRECT sends the connection to the LAN address, so the proxy listens there.
      const p = await lab.proxy(['-D', '6', '-b', '2001:db8:1::1']);
      for (const mode of ['epsv', 'eprt'] as const) {
        const r = await lab.get('curl', mode, 'test20M.bin', { FAMILY: '6' });
        expect(r.ok, `${r.output}\n${p.log}`).toBe(true);
      }
      expect(p.log).toMatch(/^#1 FTP session 1\/100 started: client 2001:db8:1::10 to server 2001:db8:2::21 via proxy 2001:db8:2::1$/m);
      expect(await lab.waitNoPinholes()).toBe(0);
      await p.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
