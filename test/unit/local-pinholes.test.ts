// Local pinholes (data_mode joins): the one connection each admits to the proxy's own listener, in every
// backend: nftables elements (no source NAT), iptables chains (DNAT + INPUT accept, the I chains only
// when needed, and removed again), pf text (one rdr-to rule, pf.conf grammar), and the fake. Golden files
// as for the other shapes; test/e2e/iptables.test.ts and test/e2e/policy.test.ts load them into a kernel.
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { localPinhole, type Pinhole, type RuleOptions } from '../../src/firewall/backend.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { addScript as iptAdd, pinholeRules, removeScript as iptRemove } from '../../src/firewall/iptables.js';
import { addScript as nftAdd, removeScript as nftRemove } from '../../src/firewall/nftables.js';
import { pfLocalRule } from '../../src/firewall/pf.js';
import { checkPfRule } from '../helpers/pf-grammar.js';

const plain: RuleOptions = { log: 0, timeout: 30 };
const owner = { instance: '4a3b2c1d', session: 7 };
const NOW = new Date('2026-11-21T12:00:00Z');

// Forward lab: C=192.168.1.10 dialled OS=198.51.100.21; the proxy is 192.168.1.1 towards C and
// P=198.51.100.1 towards S. Client leg: C -> OS:61000 => 192.168.1.1:40000. Server leg: S -> P:61001 => P:40001.
const PINS: Pinhole[] = [
  localPinhole('client', 4, '192.168.1.10', '198.51.100.21', 61000, '192.168.1.1', 40000),
  localPinhole('server', 4, '198.51.100.21', '198.51.100.1', 61001, '198.51.100.1', 40001),
];

const golden = (dir: string, name: string, actual: string): void => {
  const path = new URL(`../golden/${dir}/${name}`, import.meta.url);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, 'utf8'));
};

describe('nftables', () => {
  it('matches local.nft: once and dnat elements, no snat', () => {
    const text = [...nftAdd(PINS, '4a3b2c1d.7', 'pinhole', 30), ...nftRemove(PINS, 'pinhole')].join('\n') + '\n';
    golden('nftables', 'local.nft', text);
    expect(text).not.toMatch(/snat/);
    expect(nftAdd(PINS, '4a3b2c1d.7', 'pinhole', 30)).toContain(
      'create element inet ftp-proxy dnat4 { 192.168.1.10 . 198.51.100.21 . 61000 timeout 30s comment "4a3b2c1d.7" : 192.168.1.1 . 40000 }',
    );
  });
});

describe('iptables', () => {
  const rules = pinholeRules(PINS, plain, owner, 11, NOW);

  it('matches local.rules: DNAT once in PREROUTING, ACCEPT in INPUT, nothing in POSTROUTING or FORWARD', () => {
    golden('iptables', 'local.rules', iptAdd(owner, 'A', rules, false));
    expect(rules.POST).toEqual([]);
    expect(rules.FWD).toEqual([]);
    expect(rules.PRE).toHaveLength(2);
    expect(rules.IN).toEqual([
      '-s 192.168.1.10/32 -d 192.168.1.1/32 -p tcp -m tcp --dport 40000 -m conntrack --ctstate DNAT --ctorigdst 198.51.100.21 --ctorigdstport 61000 -m comment --comment "ftp-proxy 4a3b2c1d.7" -j ACCEPT',
      '-s 198.51.100.21/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 40001 -m conntrack --ctstate DNAT --ctorigdst 198.51.100.1 --ctorigdstport 61001 -m comment --comment "ftp-proxy 4a3b2c1d.7" -j ACCEPT',
    ]);
    for (const r of rules.PRE) expect(r).toMatch(/-m recent ! --rcheck .* -m recent --set .* -j DNAT --to-destination /);
  });

  it('-T: the mark is set, the ruleset accepts it (no ACCEPT of our own)', () => {
    const t = pinholeRules(PINS, { log: 0, tag: '42', timeout: 30 }, owner, 12, NOW);
    expect(t.IN).toEqual([]);
    expect(t.PRE.filter((r) => r.includes('CONNMARK'))).toHaveLength(2);
  });

  it('the I chains exist only for sets that hold local pinholes, and their removal unlinks them', () => {
    expect(iptAdd(owner, 'A', rules, false)).toMatch(/^:FTPP-4a3b2c1d-7-IA - \[0:0\]$/m);
    expect(iptAdd(owner, 'A', rules, false)).toMatch(/^-A FTPPROXY-IN -j FTPP-4a3b2c1d-7-IA$/m);
    const plainRules = pinholeRules([], plain, owner, 13, NOW);
    expect(iptAdd(owner, 'A', plainRules, false)).not.toMatch(/-IA/);
    expect(iptRemove(owner, 'A', false, true)).toMatch(/^-D FTPPROXY-IN -j FTPP-4a3b2c1d-7-IA\n(.*\n)*-X FTPP-4a3b2c1d-7-IA$/m);
    expect(iptRemove(owner, 'A', false)).not.toMatch(/-IA/);
  });
});

describe('pf', () => {
  const text = PINS.map((p) => pfLocalRule(p, plain)).join('\n') + '\n';
  it('matches local.conf: one pass in ... rdr-to per leg, no nat-to', () => {
    golden('pf', 'local.conf', text);
    expect(text).not.toMatch(/nat-to|pass out/);
  });

  it.each(text.trim().split('\n'))('%s parses as pf.conf', (rule) => {
    expect(checkPfRule(rule)).toEqual({ ok: true });
  });

  it('the SYN arrives in the rdomain of its peer: the client leg in the client one, the server leg in the proxy one', () => {
    const rd = { client: 1, proxy: 2 };
    expect(pfLocalRule(PINS[0]!, plain, rd)).toMatch(/^pass in quick on rdomain 1 /);
    expect(pfLocalRule(PINS[1]!, plain, rd)).toMatch(/^pass in quick on rdomain 2 /);
    expect(pfLocalRule(PINS[0]!, { log: 0, tag: 'T', timeout: 30 })).toMatch(/^match in on rdomain 0 .* tag T rdr-to/);
  });
});

describe('fake', () => {
  it('holds both local pinholes as one replacement and drops them on clear', async () => {
    const fw = new FakeFirewall();
    await fw.replace(owner, PINS);
    expect(fw.live.get('4a3b2c1d.7')).toEqual(PINS);
    await fw.clear(owner);
    expect(fw.live.size).toBe(0);
  });
});
