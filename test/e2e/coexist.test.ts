// The shipped firewall examples on a box that already has other software's rules: a Docker-like
// iptables setup (tables ip nat and ip filter, through iptables-nft), fail2ban's nftables table with a
// ban, a libvirt-like nftables table, and the admin's own default-deny ruleset. Each example is loaded
// exactly as shipped; FTP works through the proxy, passive and active; and every table that is not the
// example's own is, after the transfers and the proxy's stop, what it was before (nft -s / iptables-save,
// counters left out: traffic moves them).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, Lab, type Mode, requireLab, ROOT } from './lab.js';

const IPT = `${ROOT}iptables-examples/`;
const IPTABLES = 'iptables-nft';

/** What Docker puts into iptables (abridged from a real host): its chains in nat and filter, a port published. */
const DOCKER = `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`;

/** fail2ban's iptables action: its chain, one ban, the jump from INPUT. */
const FAIL2BAN_IPT = `*filter
:f2b-sshd - [0:0]
-I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd
-A f2b-sshd -s 203.0.113.66/32 -j REJECT --reject-with icmp-port-unreachable
-A f2b-sshd -j RETURN
COMMIT
`;

/** fail2ban's nftables action (Debian's default banaction) and a libvirt-like table. */
const NFT_OTHERS = `table inet f2b-table {
	set addr-set-sshd {
		type ipv4_addr
		elements = { 203.0.113.66 }
	}
	chain f2b-chain {
		type filter hook input priority filter - 1; policy accept;
		tcp dport 22 ip saddr @addr-set-sshd reject with icmp port-unreachable
	}
}
table ip libvirt_network {
	chain guest_output {
		type filter hook forward priority filter; policy accept;
		oifname "virbr0" ip daddr 192.168.122.0/24 ct state established,related accept
		oifname "virbr0" reject
	}
}
`;

/** An admin's own default-deny nftables ruleset, with the lines the drop-in tells them to add. */
const adminNft = (input: string[], forward: string[]): string => `table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		iif "lo" accept
		meta l4proto { icmp, ipv6-icmp } accept
		tcp dport 22 accept
${input.map((l) => `\t\t${l}\n`).join('')}	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" accept
${forward.map((l) => `\t\t${l}\n`).join('')}	}
}
table inet nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" ip saddr { 192.168.1.0/24, 10.0.0.0/24 } masquerade
	}
}
`;

/** An admin's own default-deny iptables rules (rules.v4), loaded by a full iptables-restore. */
const ADMIN_IPT = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-port-unreachable
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan -o wan -j ACCEPT
COMMIT
`;

/**
 * iptables-save text to compare: no comments, no counters, none of the drop-in's FTP-INTERCEPT chain
 * and jumps, no table that holds nothing but empty built-in chains (as if absent), tables sorted.
 */
function normalizeSave(save: string, keep: (table: string) => boolean): string {
  const sections: string[] = [];
  for (const block of save.split(/^COMMIT$/m)) {
    const lines = block
      .split('\n')
      .filter((l) => l && !l.startsWith('#') && !/FTP-INTERCEPT/.test(l))
      .map((l) => l.replace(/\[\d+:\d+\]$/, '[]'));
    const name = lines.find((l) => l.startsWith('*'))?.slice(1);
    if (!name || !keep(name)) continue;
    const empty = lines.every((l) => l.startsWith('*') || /^:[A-Z]+ ACCEPT \[\]$/.test(l));
    if (!empty) sections.push(lines.join('\n'));
  }
  return sections.sort().join('\nCOMMIT\n');
}

/** "your input chain: ..." / "your forward chain: ..." lines of a drop-in's comment. */
function adminLines(file: string): { input: string[]; forward: string[] } {
  const text = readFileSync(file, 'utf8');
  const pick = (chain: string): string[] => [...text.matchAll(new RegExp(`^#\\s+your ${chain} chain:\\s+(.+)$`, 'gm'))].map((m) => m[1]!);
  return { input: pick('input'), forward: pick('forward') };
}

interface Setup {
  name: string;
  mode: Mode;
  backend: 'nftables' | 'iptables';
  example: string;
  /** The tables the example owns and replaces (left out of the comparison). */
  own: string[];
  /** The admin's ruleset: nftables (with the drop-in's lines) or iptables. */
  admin: 'nft' | 'nft-dropin' | 'iptables' | 'none';
  /** Docker's iptables chains are there (a full iptables-restore replaces them: only with drop-ins). */
  docker: boolean;
  args: string[];
  /** IPv6 transfers too. */
  v6?: boolean;
}

const REVERSE = ['-R', '10.0.0.21', '-P', '21'];
const SETUPS: Setup[] = [
  { name: 'nftables drop-in, forward', mode: 'forward', backend: 'nftables', example: `${EXAMPLES}dropin-forward-redirect.nft`, own: ['inet ftp-proxy-intercept'], admin: 'nft-dropin', docker: true, args: [] },
  { name: 'nftables drop-in, forward, tproxy, IPv4 and IPv6', mode: 'forward', backend: 'nftables', example: `${EXAMPLES}dropin-forward-tproxy.nft`, own: ['inet ftp-proxy-intercept'], admin: 'nft-dropin', docker: true, args: ['-b', '127.0.0.1', '-b', '::1'], v6: true },
  { name: 'nftables drop-in, reverse', mode: 'reverse', backend: 'nftables', example: `${EXAMPLES}dropin-reverse.nft`, own: ['inet ftp-proxy-intercept'], admin: 'nft-dropin', docker: true, args: REVERSE },
  { name: 'nftables complete ruleset, forward', mode: 'forward', backend: 'nftables', example: `${EXAMPLES}forward-redirect.nft`, own: ['inet filter'], admin: 'nft', docker: true, args: [] },
  { name: 'iptables drop-in, forward', mode: 'forward', backend: 'iptables', example: `${IPT}dropin-forward-redirect.rules`, own: [], admin: 'iptables', docker: true, args: ['--backend', 'iptables'] },
  { name: 'iptables drop-in, reverse', mode: 'reverse', backend: 'iptables', example: `${IPT}dropin-reverse.rules`, own: [], admin: 'iptables', docker: true, args: ['--backend', 'iptables', ...REVERSE] },
  // iptables-restore replaces whole tables (its comment says so): the unrelated ones are nftables tables.
  { name: 'iptables complete ruleset, forward', mode: 'forward', backend: 'iptables', example: `${IPT}forward-redirect.rules`, own: ['ip raw', 'ip nat', 'ip filter'], admin: 'none', docker: false, args: ['--backend', 'iptables'] },
];

beforeAll(async () => {
  await requireLab();
  const r = await execa('sh', ['-c', 'command -v ping'], { reject: false });
  if (r.exitCode !== 0) throw new Error('the ICMP checks need ping: apt-get install iputils-ping');
});

describe.each(SETUPS)('$name, on a firewall with Docker, fail2ban and libvirt rules', (s) => {
  let lab: Lab;
  const dir = mkdtempSync(join(tmpdir(), 'ftpp-coexist-'));
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const nft = async (...args: string[]) => (await lab.exec('fw', ['nft', ...args])).stdout;

  const tableList = async (): Promise<string[]> =>
    (await nft('list', 'tables'))
      .split('\n')
      .map((l) => l.replace(/^table /, '').trim())
      .filter((t) => t && t !== 'inet ftp-proxy' && !s.own.includes(t))
      .sort();
  /** The given tables (every table but the example's own and the proxy's), as text without counters. */
  const saves = async (): Promise<[string, string][]> => {
    const out: [string, string][] = [];
    for (const [fam, cmd] of [['ip', `${IPTABLES}-save`], ['ip6', `ip6${IPTABLES.slice(2)}-save`]] as const) out.push([fam, (await lab.exec('fw', [cmd])).stdout]);
    return out;
  };
  /** The nftables tables iptables(-nft) manages: "ip filter", "ip6 nat", ... */
  const iptablesTables = async (): Promise<string[]> =>
    (await saves()).flatMap(([fam, save]) => [...save.matchAll(/^\*(\S+)$/gm)].map((m) => `${fam} ${m[1]!}`));
  const others = async (tables: string[]): Promise<string> => {
    const parts = [`tables: ${tables.join(', ')}`];
    // With the iptables backend, the tables iptables shares with the drop-in are compared through
    // iptables-save below, where the drop-in's chain and jumps can be told apart.
    const viaSave = s.backend === 'iptables' ? await iptablesTables() : [];
    for (const t of tables.filter((x) => !viaSave.includes(x))) parts.push(await nft('-s', 'list', 'table', ...t.split(' ')));
    for (const [fam, save] of s.backend === 'iptables' ? await saves() : []) {
      parts.push(`${fam}tables: ${normalizeSave(save, (table) => !s.own.includes(`${fam} ${table}`))}`);
    }
    return parts.join('\n');
  };

  beforeAll(async () => {
    lab = await Lab.up(s.mode);
    lab.iptables = IPTABLES;
    if (s.admin === 'iptables') await lab.loadRuleset(file('admin.rules', ADMIN_IPT));
    if (s.docker) await lab.exec('fw', [`${IPTABLES}-restore`, '--noflush'], { input: DOCKER });
    if (s.admin === 'iptables') await lab.exec('fw', [`${IPTABLES}-restore`, '--noflush'], { input: FAIL2BAN_IPT });
    await lab.loadRuleset(file('others.nft', NFT_OTHERS));
  });
  afterAll(async () => {
    await lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  if (s.admin === 'nft-dropin') {
    it('without the lines its comment asks for, the admin\'s default-deny chains stop FTP: our table cannot override their drop', async () => {
      await lab.loadRuleset(file('admin-plain.nft', adminNft([], [])));
      await lab.loadRuleset(s.example);
      const p = await lab.proxy(['-D', '6', ...s.args]);
      expect((await lab.get('curl', 'pasv', 'small.txt', { TMO: '2', MAXT: '5' })).ok).toBe(false);
      await p.stop();
    });
  }

  it('loaded as shipped: passive and active transfers through the proxy, and every other table as it was', async () => {
    if (s.admin === 'nft-dropin') {
      const add = adminLines(s.example);
      expect(add.input.length).toBeGreaterThanOrEqual(1);
      // ct status dnat for the pinholes; forward mode also ct label 127 for passthrough's range pinholes
      // (their DNAT changes nothing, so conntrack does not mark them DNATed).
      expect(add.forward.length).toBe(s.mode === 'forward' ? 2 : 1);
      // The admin adds the drop-in's lines to their own chains (replacing their table, as nft -f of
      // their /etc/nftables.conf would).
      await lab.exec('fw', ['nft', 'delete', 'table', 'inet', 'filter'], { reject: false });
      await lab.exec('fw', ['nft', 'delete', 'table', 'inet', 'nat'], { reject: false });
      await lab.loadRuleset(file('admin.nft', adminNft(add.input, add.forward)));
    } else if (s.admin === 'nft') {
      // The complete ruleset replaces this one.
      await lab.loadRuleset(file('admin.nft', adminNft([], [])));
    }
    const tables = await tableList();
    const before = await others(tables);
    expect(before).toMatch(/table inet f2b-table/);
    if (s.docker) expect(before).toMatch(/DOCKER-USER/);

    await lab.loadRuleset(s.example);
    const p = await lab.proxy(['-D', '6', ...s.args], s.backend === 'iptables' ? { FTP_PROXY_IPTABLES: IPTABLES } : {});
    for (const [client, mode] of [
      ['curl', 'pasv'],
      ['lftp', 'port'],
      ['curl', 'epsv'],
      ['curl', 'port'],
    ] as const) {
      const r = await lab.get(client, mode);
      expect(r.ok, `${client} ${mode}: ${r.output}\n${p.log}`).toBe(true);
    }
    if (s.v6) {
      for (const mode of ['epsv', 'eprt'] as const) {
        const r = await lab.get('curl', mode, 'test20M.bin', { FAMILY: '6' });
        expect(r.ok, `curl ${mode} over IPv6: ${r.output}\n${p.log}`).toBe(true);
      }
    }
    expect(p.log).toMatch(/passive: client to server port/);
    expect(p.log).toMatch(/active: server to client port/);
    // A reload of the example (an admin's `systemctl reload nftables`, a second iptables-restore) is
    // fine too.
    await lab.loadRuleset(s.example);
    expect((await lab.get('curl', 'pasv', 'small.txt')).ok).toBe(true);
    await p.stop();
    expect(await lab.proxyObjects(s.backend)).toBe(false);

    expect(await others(tables)).toBe(before);
    // No other table came. (iptables' own tables, which an iptables command creates with their empty
    // built-in chains, were compared through iptables-save above, empty ones left out.)
    const viaSave = s.backend === 'iptables' ? await iptablesTables() : [];
    expect((await tableList()).filter((t) => !tables.includes(t) && !viaSave.includes(t))).toEqual([]);
  });

  /** What a TCP connection from the client gets (a listener just spawned may need a moment). */
  const probe = async (url: string): Promise<string> => {
    let out = '';
    for (let i = 0; i < 20 && !out; i++) {
      out = (await lab.exec('cli', ['curl', '-s', '--max-time', '2', url], { reject: false })).stdout;
      if (!out) await new Promise((r) => setTimeout(r, 250));
    }
    return out;
  };

  if (s.own.includes('inet filter')) {
    it('the complete ruleset keeps SSH, ICMP and ICMPv6 to the box and lets the LAN out with masquerade', async () => {
      const ruleset = await nft('list', 'table', 'inet', 'filter');
      expect(ruleset).toMatch(/tcp dport 22 accept/);
      expect(ruleset).toMatch(/meta l4proto ipv6-icmp accept/);
      expect(ruleset).not.toMatch(/flush ruleset/);
      // SSH from the LAN to the box, over IPv4 and IPv6 (which needs neighbour discovery): something
      // listening on 22 answers.
      const ssh = lab.spawn('fw', [process.execPath, '-e', "require('net').createServer(s=>s.end('SSH-2.0-test\\n')).listen(22,'::')"]);
      for (const url of ['telnet://192.168.1.1:22', 'telnet://[2001:db8:1::1]:22']) expect(await probe(url), url).toContain('SSH-2.0-test');
      ssh.kill();
      expect((await lab.exec('cli', ['ping', '-c1', '-W2', '192.168.1.1'], { reject: false })).exitCode).toBe(0);
      expect((await lab.exec('cli', ['ping', '-6', '-c1', '-W2', '2001:db8:1::1'], { reject: false })).exitCode).toBe(0);
      // The LAN goes out, with the firewall's address as its source.
      const echo = lab.spawn('srv', [process.execPath, '-e', "require('net').createServer(s=>s.end(s.remoteAddress+'\\n')).listen(7777,'198.51.100.21')"]);
      expect((await probe('telnet://198.51.100.21:7777')).trim()).toMatch(/198\.51\.100\.1$/);
      echo.kill();
    });
  }
});
