// The iptables backend's iptables-restore input: golden files for every rule shape, and the A/B
// chain-set scripts. (test/e2e/ipt-golden.test.ts loads these into a real kernel.)
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { activePinhole, passivePinhole, passthroughPinhole, type RuleOptions, type SessionEnds } from '../../src/firewall/backend.js';
import { addScript, chainName, datestop, existingOnly, markerChain, nextSet, parentRepairScript, pinholeRules, removeScript, removeSetsScript } from '../../src/firewall/iptables.js';

const fwd: SessionEnds = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
const v6: SessionEnds = { family: 6, client: '2001:db8:1::10', originalServer: '2001:db8:2::21', server: '2001:db8:2::21', proxy: '2001:db8:2::1' };
const owner = { instance: '4a3b2c1d', session: 7 };
const NOW = new Date('2026-11-21T12:00:00Z');
const plain: RuleOptions = { log: 0, timeout: 30 };

const golden = (name: string, actual: string): void => {
  const path = new URL(`../golden/iptables/${name}`, import.meta.url);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, 'utf8'));
};

export const IPT_GOLDENS: [string, string][] = [
  ['passive.rules', addScript(owner, 'A', pinholeRules([passivePinhole(fwd, 50000, 61000)], plain, owner, 1, NOW), false)],
  ['active.rules', addScript(owner, 'B', pinholeRules([activePinhole(fwd, 40123, 55555, false)], plain, owner, 2, NOW), false)],
  ['active-r-port20.rules', addScript(owner, 'A', pinholeRules([activePinhole(fwd, 40123, 55555, true)], plain, owner, 3, NOW), false)],
  ['log-v.rules', addScript(owner, 'A', pinholeRules([passivePinhole(fwd, 50000, 61000)], { log: 1, timeout: 30 }, owner, 4, NOW), false)],
  ['log-vv.rules', addScript(owner, 'A', pinholeRules([passivePinhole(fwd, 50000, 61000)], { log: 2, timeout: 30 }, owner, 5, NOW), false)],
  ['tag-T.rules', addScript(owner, 'A', pinholeRules([passivePinhole(fwd, 50000, 61000)], { log: 0, tag: '42', timeout: 30 }, owner, 6, NOW), false)],
  ['queue-q.rules', addScript(owner, 'A', pinholeRules([passivePinhole(fwd, 50000, 61000)], { log: 0, queue: '1:10', timeout: 30 }, owner, 7, NOW), true)],
  ['ipv6-epsv.v6.rules', addScript(owner, 'A', pinholeRules([passivePinhole(v6, 50000, 61000)], plain, owner, 8, NOW), false)],
  ['ipv6-eprt.v6.rules', addScript(owner, 'A', pinholeRules([activePinhole(v6, 40123, 55555, false)], plain, owner, 9, NOW), false)],
  ['remove-A.rules', removeScript(owner, 'A', false)],
  // tls_client passthrough: the server's passive range, session-lived
  ['range.rules', addScript(owner, 'A', pinholeRules([passthroughPinhole(fwd, 50000, 50100)], plain, owner, 10, NOW), false)],
  ['range-v-tag.rules', addScript(owner, 'A', pinholeRules([passthroughPinhole(fwd, 50000, 50100)], { log: 1, tag: '42', timeout: 30 }, owner, 11, NOW), false)],
  ['range-vv-queue.rules', addScript(owner, 'A', pinholeRules([passthroughPinhole(fwd, 50000, 50100)], { log: 2, queue: '1:10', timeout: 30 }, owner, 12, NOW), true)],
  ['range.v6.rules', addScript(owner, 'A', pinholeRules([passthroughPinhole(v6, 50000, 50100)], plain, owner, 13, NOW), false)],
];

describe('iptables-restore input', () => {
  it.each(IPT_GOLDENS)('%s matches its golden file', (name, text) => golden(name, text));

  it('passive: DNAT of the SYN to OS:pp, once; SNAT and ACCEPT keyed on the original destination', () => {
    const r = pinholeRules([passivePinhole(fwd, 50000, 61000)], plain, owner, 1, NOW);
    expect(r.PRE).toEqual([
      '-s 192.168.1.10/32 -d 198.51.100.21/32 -p tcp -m tcp --dport 61000 --tcp-flags SYN,ACK SYN -m time --datestop 2026-11-21T12:00:30 ' +
        '-m recent ! --rcheck --name ftpp-4a3b2c1d.7-1 --rsource -m recent --set --name ftpp-4a3b2c1d.7-1 --rsource ' +
        '-m comment --comment "ftp-proxy 4a3b2c1d.7" -j DNAT --to-destination 198.51.100.21:50000',
    ]);
    expect(r.POST[0]).toBe(
      '-s 192.168.1.10/32 -d 198.51.100.21/32 -p tcp -m tcp --dport 50000 -m conntrack --ctstate DNAT --ctorigdst 198.51.100.21 --ctorigdstport 61000 ' +
        '-m comment --comment "ftp-proxy 4a3b2c1d.7" -j SNAT --to-source 198.51.100.1',
    );
    expect(r.FWD).toEqual([r.POST[0]!.replace('-j SNAT --to-source 198.51.100.1', '-j ACCEPT')]);
    expect(r.MGL).toEqual([]);
  });

  it('-T marks the connection and does not ACCEPT (pf "match"); -vv logs in FORWARD; -q classifies', () => {
    const t = pinholeRules([passivePinhole(fwd, 50000, 61000)], { log: 0, tag: '42', timeout: 30 }, owner, 1, NOW);
    expect(t.PRE[0]).toMatch(/-j CONNMARK --set-mark 0x2a$/);
    expect(t.FWD).toEqual([]);
    const vv = pinholeRules([passivePinhole(fwd, 50000, 61000)], { log: 2, timeout: 30 }, owner, 1, NOW);
    expect(vv.FWD[0]).toMatch(/-j LOG --log-prefix "ftp-proxy: "$/);
    expect(vv.FWD[1]).toMatch(/-j ACCEPT$/);
    const q = pinholeRules([passivePinhole(fwd, 50000, 61000)], { log: 0, queue: '1:10', timeout: 30 }, owner, 1, NOW);
    expect(q.MGL[0]).toMatch(/-j CLASSIFY --set-class 1:10$/);
    // Both directions of the data connection (a passive download flows server -> client): no address
    // or port match, only the connection's conntrack identity.
    for (const rule of [vv.FWD[0]!, q.MGL[0]!]) {
      expect(rule).toMatch(/^-p tcp -m conntrack --ctstate DNAT --ctorigsrc 192\.168\.1\.10 --ctorigdst 198\.51\.100\.21 --ctorigdstport 61000 /);
      expect(rule).not.toMatch(/ -s | -d | --dport /);
    }
  });

  it('IPv6 addresses get /128 and brackets where a port follows', () => {
    const r = pinholeRules([activePinhole(v6, 40123, 55555, true)], plain, owner, 1, NOW);
    expect(r.PRE[0]).toContain('-s 2001:db8:2::21/128 -d 2001:db8:2::1/128');
    expect(r.PRE[0]).toMatch(/--to-destination \[2001:db8:1::10\]:40123$/);
    expect(r.POST[0]).toMatch(/--to-source \[2001:db8:2::21\]:20$/);
  });

  it('a range pinhole (tls_client passthrough): --dport LOW:HIGH, the port kept, no single use, no expiry', () => {
    const r = pinholeRules([passthroughPinhole(fwd, 50000, 50100)], plain, owner, 1, NOW);
    expect(r.PRE).toEqual([
      '-s 192.168.1.10/32 -d 198.51.100.21/32 -p tcp -m tcp --dport 50000:50100 --tcp-flags SYN,ACK SYN ' +
        '-m comment --comment "ftp-proxy 4a3b2c1d.7" -j DNAT --to-destination 198.51.100.21',
    ]);
    expect(r.POST).toEqual([
      '-s 192.168.1.10/32 -d 198.51.100.21/32 -p tcp -m tcp --dport 50000:50100 -m conntrack --ctorigdst 198.51.100.21 --ctorigdstport 50000:50100 ' +
        '-m comment --comment "ftp-proxy 4a3b2c1d.7" -j SNAT --to-source 198.51.100.1',
    ]);
    expect(r.FWD).toEqual([r.POST[0]!.replace('-j SNAT --to-source 198.51.100.1', '-j ACCEPT')]);
    const all = Object.values(r).flat().join('\n');
    expect(all).not.toMatch(/recent|datestop/);
    // IPv6: DNAT to the bare address (no brackets without a port)
    expect(pinholeRules([passthroughPinhole(v6, 50000, 50100)], plain, owner, 1, NOW).PRE[0]).toMatch(/--dport 50000:50100 .*--to-destination 2001:db8:2::21$/);
    // -v/-T: the LOG and CONNMARK rules match the range's SYN too, without a recent list
    const vt = pinholeRules([passthroughPinhole(fwd, 50000, 50100)], { log: 1, tag: '42', timeout: 30 }, owner, 1, NOW);
    expect(vt.PRE.map((l) => l.replace(/.* -j /, '-j '))).toEqual(['-j LOG --log-prefix "ftp-proxy: "', '-j CONNMARK --set-mark 0x2a', '-j DNAT --to-destination 198.51.100.21']);
    expect(vt.PRE.join('\n')).not.toMatch(/recent|datestop/);
  });

  it('a new list per negotiation, so a new pinhole never sees an old one used', () => {
    const a = pinholeRules([passivePinhole(fwd, 50000, 61000)], plain, owner, 1, NOW).PRE[0];
    const b = pinholeRules([passivePinhole(fwd, 50000, 61000)], plain, owner, 2, NOW).PRE[0];
    expect(a).not.toBe(b);
  });

  it('chain names stay within the 28 characters xtables allows', () => {
    expect(chainName({ instance: '0000000a', session: 7 }, 'S', 'B')).toBe('FTPP-0000000a-7-SB');
    // an id is 8 hex digits; session ids up to 10^11 still fit.
    expect(chainName({ instance: 'ffffffff', session: 99_999_999_999 }, 'M', 'A').length).toBeLessThanOrEqual(28);
    expect(markerChain('ffffffff').length).toBeLessThanOrEqual(28);
  });

  it('datestop is UTC, to the second', () => {
    expect(datestop(new Date('2026-11-21T23:59:45.900Z'), 30)).toBe('2026-11-22T00:00:15');
  });
});

describe('parentRepairScript (the repair after an admin reload)', () => {
  const whole = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ':FTPPROXY-PRE - [0:0]',
    ':FTPPROXY-POST - [0:0]',
    '-A PREROUTING -j FTPPROXY-PRE',
    '-A POSTROUTING -j FTPPROXY-POST',
    '-A FTPPROXY-PRE -j FTPP-0000000a-1-DA',
    'COMMIT',
    '*filter',
    ':FORWARD DROP [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':FTPPROXY-FWD - [0:0]',
    ':FTPPROXY-IN - [0:0]',
    ':FTPPI-0000000a - [0:0]',
    '-A INPUT -j FTPPROXY-IN',
    '-A FORWARD -m conntrack --ctstate NEW -j FTPPROXY-FWD',
    'COMMIT',
    '',
  ].join('\n');

  it('nothing to do when all is in place: a second repair is a no-op', () => {
    expect(parentRepairScript(whole, false, '0000000a')).toBe('');
  });

  it('never writes `:CHAIN - [0:0]` (under --noflush it empties an existing chain and its session jumps)', () => {
    const noJumps = whole.replace('-A FORWARD -m conntrack --ctstate NEW -j FTPPROXY-FWD\n', '');
    expect(parentRepairScript(noJumps, false, '0000000a')).toBe('*filter\n-I FORWARD 1 -m conntrack --ctstate NEW -j FTPPROXY-FWD\nCOMMIT\n');
    expect(parentRepairScript('', true, '0000000a')).not.toMatch(/^:/m);
  });

  it('creates missing chains with -N (fails, rather than flushes, if another process made one meanwhile)', () => {
    expect(parentRepairScript('', false, '0000000b')).toBe(
      [
        '*nat',
        '-N FTPPROXY-PRE',
        '-I PREROUTING 1 -j FTPPROXY-PRE',
        '-N FTPPROXY-POST',
        '-I POSTROUTING 1 -j FTPPROXY-POST',
        'COMMIT',
        '*filter',
        '-N FTPPROXY-FWD',
        '-I FORWARD 1 -m conntrack --ctstate NEW -j FTPPROXY-FWD',
        '-N FTPPROXY-IN',
        '-I INPUT 1 -j FTPPROXY-IN',
        '-N FTPPI-0000000b',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  it('removes a jump two concurrent repairs duplicated', () => {
    const j = '-A FORWARD -m conntrack --ctstate NEW -j FTPPROXY-FWD\n';
    const twice = whole.replace(j, j + j + j);
    const d = '-D FORWARD -m conntrack --ctstate NEW -j FTPPROXY-FWD\n';
    expect(parentRepairScript(twice, false, '0000000a')).toBe(`*filter\n${d}${d}COMMIT\n`);
  });

  it('FORWARD jumps for first packets only (established data never walks the session chains), every packet with -vv', () => {
    expect(parentRepairScript('', false)).toMatch(/^-I FORWARD 1 -m conntrack --ctstate NEW -j FTPPROXY-FWD$/m);
    expect(parentRepairScript('', false)).toMatch(/^-I PREROUTING 1 -j FTPPROXY-PRE$/m);
    expect(parentRepairScript('', false)).toMatch(/^-I INPUT 1 -j FTPPROXY-IN$/m);
    expect(parentRepairScript('', true, undefined, true)).toMatch(/^-I FORWARD 1 -j FTPPROXY-FWD$/m);
    expect(parentRepairScript('', true, undefined, false)).toMatch(/^-I FORWARD 1 -j FTPPROXY-MGL$/m); // -q: every packet's class
    const rules = pinholeRules([passivePinhole(fwd, 50000, 61000)], plain, owner, 1, NOW);
    expect(addScript(owner, 'A', rules, false, true)).toContain('-C FORWARD -m conntrack --ctstate NEW -j FTPPROXY-FWD\n');
    expect(addScript(owner, 'A', rules, false, true, true)).toContain('-C FORWARD -j FTPPROXY-FWD\n');
  });
});

describe('the reply path and the stop: one iptables-restore each', () => {
  const rules = pinholeRules([passivePinhole(fwd, 50000, 61000)], plain, owner, 1, NOW);

  it('the backend\'s add checks the builtin jumps inside its own transaction (-C), so no iptables-save is needed', () => {
    const text = addScript(owner, 'A', rules, false, true);
    expect(text).toMatch(/^\*nat\n-C PREROUTING -j FTPPROXY-PRE\n-C POSTROUTING -j FTPPROXY-POST\n:FTPP-/);
    expect(text).toMatch(/^\*filter\n-C FORWARD -m conntrack --ctstate NEW -j FTPPROXY-FWD\n:FTPP-/m);
    expect(addScript(owner, 'A', rules, false)).not.toMatch(/^-C /m); // --print-rules shows the set alone
  });

  it('through the kept process the builtin chains are listed instead (-S reads one chain, -C the whole table), each once per table', () => {
    const text = addScript(owner, 'A', rules, true, 'list');
    expect(text).not.toMatch(/^-C /m);
    expect(text).toMatch(/^\*nat\n-S PREROUTING\n-S POSTROUTING\n:FTPP-/);
    expect(text).toMatch(/^\*filter\n-S FORWARD\n:FTPP-/m);
    expect(text).toMatch(/^\*mangle\n-S FORWARD\n:FTPP-/m);
  });

  it('removes the chain sets of many sessions in one script, one block per table', () => {
    const two = removeSetsScript(
      [
        { owner, set: 'A', withInput: false },
        { owner: { instance: '0000000a', session: 9 }, set: 'B', withInput: true },
      ],
      false,
    );
    expect(two.match(/^\*nat$/gm)).toHaveLength(1);
    expect(two.match(/^\*filter$/gm)).toHaveLength(1);
    expect(two).toContain('-D FTPPROXY-PRE -j FTPP-4a3b2c1d-7-DA\n-D FTPPROXY-POST -j FTPP-4a3b2c1d-7-SA\n-D FTPPROXY-PRE -j FTPP-0000000a-9-DB');
    expect(two).toContain('-D FTPPROXY-IN -j FTPP-0000000a-9-IB');
    expect(removeSetsScript([{ owner, set: 'A', withInput: false }], false)).toBe(removeScript(owner, 'A', false));
  });

  it('a removal cut down to what exists after an admin reload (absent chains, absent jumps)', () => {
    const script = removeScript(owner, 'A', false);
    const save = ['*nat', ':FTPPROXY-PRE - [0:0]', ':FTPP-4a3b2c1d-7-DA - [0:0]', '-A FTPPROXY-PRE -j FTPP-4a3b2c1d-7-DA', 'COMMIT', '*filter', ':FTPP-4a3b2c1d-7-FA - [0:0]', 'COMMIT', ''].join('\n');
    expect(existingOnly(script, save)).toBe(
      ['*nat', '-D FTPPROXY-PRE -j FTPP-4a3b2c1d-7-DA', '-F FTPP-4a3b2c1d-7-DA', '-X FTPP-4a3b2c1d-7-DA', 'COMMIT', '*filter', '-F FTPP-4a3b2c1d-7-FA', '-X FTPP-4a3b2c1d-7-FA', 'COMMIT', ''].join('\n'),
    );
  });
});

describe('the chain set a negotiation writes: never one still being removed', () => {
  const busyOf = (letters: string) => (c: string) => letters.includes(c);
  it.each([
    [null, '', 'A'],
    ['A', '', 'B'],
    ['B', 'A', 'C'], // A still being removed (10,000 pinholes: hundreds of ms): not waited for
    ['Z', '', 'A'],
    ['Y', 'ZA', 'B'],
    ['C', 'ABDEFGHIJKLMNOPQRSTUVWXYZ', 'D'], // all busy: the next one, after its removal
  ])('current %s, busy %j -> %s', (current, busy, want) => expect(nextSet(current, busyOf(busy))).toBe(want));
});

