// --print-rules prints, for the flags given, exactly what the backends hand to nft, iptables-restore and
// pfctl (the same functions make both), with example addresses; the pf text passes the pf.conf grammar.
import { describe, expect, it } from 'vitest';
import { type Config, parseCommandLine } from '../../src/config.js';
import { ruleOptions } from '../../src/choose-backend.js';
import * as ipt from '../../src/firewall/iptables.js';
import * as nft from '../../src/firewall/nftables.js';
import { pfLocalRule, pfRules } from '../../src/firewall/pf.js';
import { EXAMPLE_OWNER, exampleEnds, PASSTHROUGH_OWNER, printRules } from '../../src/print-rules.js';
import { activePinhole, localPinhole, passivePinhole, passthroughPinhole } from '../../src/firewall/backend.js';
import { checkPfRule } from '../helpers/pf-grammar.js';

const config = (argv: string[]): Config => {
  const r = parseCommandLine(['--print-rules', ...argv]);
  if (!('config' in r)) throw new Error(r.stderr);
  return r.config;
};
const statements = (text: string): string[] => text.split('\n').filter((l) => l && !l.startsWith('#'));
const NOW = new Date('2026-11-21T12:00:00Z');

describe('the example session', () => {
  it.each<[string[], Record<string, string | number>]>([
    [[], { family: 4, client: '192.0.2.10', originalServer: '198.51.100.20', server: '198.51.100.20', proxy: '203.0.113.1' }],
    [['-a', '192.0.2.99'], { proxy: '192.0.2.99' }],
    [['-6'], { family: 6, client: '2001:db8:1::10', originalServer: '2001:db8:3::20', server: '2001:db8:3::20', proxy: '2001:db8:2::1' }],
    [['-R', '10.0.0.21'], { originalServer: '203.0.113.21', server: '10.0.0.21' }],
    [['-R', '10.0.0.21', '-b', '198.51.100.7'], { originalServer: '198.51.100.7', server: '10.0.0.21' }],
  ])('%j', (argv, expected) => {
    expect(exampleEnds(config(argv))).toMatchObject(expected);
  });
});

describe('nftables', () => {
  it.each([[[]], [['-r']], [['-v', '-T', '42']], [['-vv', '-q', '1:10']], [['-6']], [['--pinhole-timeout', '5']]])('%j: the table, both negotiations, the removal', (argv) => {
    const c = config(argv);
    const o = ruleOptions(c);
    const text = printRules(c, 'nftables', o);
    const e = exampleEnds(c);
    const chain = nft.variantChain(o);
    const passive = passivePinhole(e, 40001, 50001);
    const active = activePinhole(e, 40002, 50002, c.port20 && !c.ipv6);
    const perPacket = nft.needsPerPacket(o) ? { label: nft.RANGE_LABEL - 1, present: false } : null;
    expect(statements(text)).toEqual([
      ...statements(nft.tableScript(o, perPacket)),
      ...nft.addScript([passive], '4a3b2c1d.1', chain, o.timeout),
      ...nft.removeScript([passive], chain),
      ...nft.addScript([active], '4a3b2c1d.1', chain, o.timeout),
      ...nft.removeScript([active], chain),
    ]);
    expect(text).toContain(`timeout ${o.timeout}s comment "4a3b2c1d.1"`);
    expect(text).toMatch(/^# ftp-proxy --print-rules: nftables, forward proxy .*Nothing was changed\.$/m);
  });

  it('-r: the active pinhole goes from port 20 (fromport map)', () => {
    const text = printRules(config(['-r']), 'nftables', ruleOptions(config(['-r'])));
    expect(text).toMatch(/^create element inet ftp-proxy fromport4 \{ 198\.51\.100\.20 \. 192\.0\.2\.10 \. 40002 \. 203\.0\.113\.1 \. 50002 timeout 30s comment "4a3b2c1d\.1" : 198\.51\.100\.20 \. 20 \}$/m);
    expect(text).toContain('"PORT 192,0,2,10,156,66"');
  });
});

describe('iptables', () => {
  it.each([[[]], [['-r', '-v']], [['-vv', '-T', '0x2a', '-q', '1:10']], [['-6']]])('%j: add A, add B, remove A, remove B', (argv) => {
    const c = config(argv);
    const o = ruleOptions(c);
    const text = printRules(c, 'iptables', o, NOW);
    const e = exampleEnds(c);
    const mangle = o.queue !== undefined;
    const passive = ipt.pinholeRules([passivePinhole(e, 40001, 50001)], o, EXAMPLE_OWNER, 1, NOW);
    const active = ipt.pinholeRules([activePinhole(e, 40002, 50002, c.port20 && !c.ipv6)], o, EXAMPLE_OWNER, 2, NOW);
    expect(statements(text).join('\n') + '\n').toBe(
      ipt.addScript(EXAMPLE_OWNER, 'A', passive, mangle) +
        ipt.addScript(EXAMPLE_OWNER, 'B', active, mangle) +
        ipt.removeScript(EXAMPLE_OWNER, 'A', mangle) +
        ipt.removeScript(EXAMPLE_OWNER, 'B', mangle),
    );
    expect(text).toContain('--datestop 2026-11-21T12:00:30');
  });
});

describe('pf', () => {
  it.each([[[]], [['-r']], [['-v', '-T', 'ftp', '-q', 'std']], [['-vv']], [['-6', '-R', '2001:db8::50']]])('%j: the anchor rules, valid pf.conf', (argv) => {
    const c = config(argv);
    const o = ruleOptions(c);
    const text = printRules(c, 'pf', o);
    const e = exampleEnds(c);
    const rules = statements(text);
    expect(rules).toEqual([...pfRules(passivePinhole(e, 40001, 50001), o), ...pfRules(activePinhole(e, 40002, 50002, c.port20 && !c.ipv6), o)]);
    for (const r of rules) expect(checkPfRule(r)).toEqual({ ok: true });
    expect(text).toContain('# pfctl -a ftp-proxy/4a3b2c1d.1 -f -');
  });
});

describe('with a policy data_mode', () => {
  const c = config([]);
  const o = ruleOptions(c);
  const e = exampleEnds(c);
  const locals = [localPinhole('client', 4, e.client, e.originalServer, 50001, '192.0.2.1', 41001), localPinhole('server', 4, e.server, e.proxy, 50002, e.proxy, 41002)];
  const active = activePinhole(e, 40002, 50002, false);

  it('active: a client PASV installs two local pinholes to the proxy itself, replaced by the PORT negotiation', () => {
    const text = printRules(c, 'nftables', o, NOW, 'active');
    const chain = nft.variantChain(o);
    expect(text).toMatch(/^# ftp-proxy --print-rules: nftables, .*, data_mode active\. Nothing was changed\.$/m);
    expect(statements(text).slice(statements(nft.tableScript(o, null)).length)).toEqual([
      ...nft.addScript(locals, '4a3b2c1d.1', chain, o.timeout),
      ...nft.removeScript(locals, chain),
      ...nft.addScript([active], '4a3b2c1d.1', chain, o.timeout),
      ...nft.removeScript([active], chain),
    ]);
    expect(text).toContain('#   192.0.2.10 -> 198.51.100.20:50001 => 192.0.2.1:41001 from 192.0.2.10 (to the proxy itself, source kept)');
  });

  it('active, pf: one rdr-to rule per leg, valid pf.conf', () => {
    const rules = statements(printRules(c, 'pf', o, NOW, 'active'));
    expect(rules).toEqual([...locals.map((p) => pfLocalRule(p, o)), ...pfRules(active, o)]);
    for (const r of rules) expect(checkPfRule(r)).toEqual({ ok: true });
  });

  it('active, iptables: the local chain set includes the INPUT accept (FTPPROXY-IN)', () => {
    const text = printRules(c, 'iptables', o, NOW, 'active');
    expect(text).toMatch(/^# {3}\*filter {2}-N FTPPROXY-IN {2}-I INPUT 1 -j FTPPROXY-IN$/m);
    expect(text).toMatch(/^-A FTPPROXY-IN -j FTPP-4a3b2c1d-1-IA$/m);
  });

  it('passive: a client PORT installs nothing (the proxy connects out to both); the PASV is the usual pinhole', () => {
    const text = printRules(c, 'nftables', o, NOW, 'passive');
    expect(text).toMatch(/^# Active, forced passive towards the server \(data_mode passive\): .* no pinhole, nothing in the firewall\.$/m);
    const chain = nft.variantChain(o);
    const passive = passivePinhole(e, 40001, 50001);
    expect(statements(text).slice(statements(nft.tableScript(o, null)).length)).toEqual([...nft.addScript([passive], '4a3b2c1d.1', chain, o.timeout), ...nft.removeScript([passive], chain)]);
  });
});

describe('with tls_client passthrough (the policy\'s tls_passthrough_ports)', () => {
  const PT = { low: 50000, high: 50100 };

  it.each([[[]], [['-v', '-T', '42']], [['-6']], [['-R', '10.0.0.21']]])('nftables %j: the range pinhole of a pass-through session after the negotiations', (argv) => {
    const c = config(argv);
    const o = ruleOptions(c);
    const e = exampleEnds(c);
    const chain = nft.variantChain(o);
    const without = statements(printRules(c, 'nftables', o, NOW));
    const text = printRules(c, 'nftables', o, NOW, 'keep', PT);
    const range = passthroughPinhole(e, 50000, 50100);
    expect(statements(text)).toEqual([...without, ...nft.addScript([range], '4a3b2c1d.2', chain, o.timeout), ...nft.removeScript([range], chain)]);
    expect(text).toContain(`#   ${e.client} -> `);
    expect(text).toMatch(/^# Pass-through \(tls_client passthrough\), session 4a3b2c1d\.2: /m);
    expect(text).toContain('conntrack label 127');
  });

  it('iptables: its own chain set, --dport LOW:HIGH, then its removal', () => {
    const c = config([]);
    const o = ruleOptions(c);
    const range = passthroughPinhole(exampleEnds(c), 50000, 50100);
    const without = statements(printRules(c, 'iptables', o, NOW)).join('\n') + '\n';
    const text = statements(printRules(c, 'iptables', o, NOW, 'keep', PT)).join('\n') + '\n';
    expect(text).toBe(
      without + ipt.addScript(PASSTHROUGH_OWNER, 'A', ipt.pinholeRules([range], o, PASSTHROUGH_OWNER, 3, NOW), false) + ipt.removeScript(PASSTHROUGH_OWNER, 'A', false),
    );
    expect(text).toContain('--dport 50000:50100');
  });

  it('pf: the two rules of its anchor, valid pf.conf', () => {
    const c = config([]);
    const o = ruleOptions(c);
    const text = printRules(c, 'pf', o, NOW, 'keep', PT);
    const range = passthroughPinhole(exampleEnds(c), 50000, 50100);
    expect(statements(text).slice(-2)).toEqual(pfRules(range, o));
    for (const r of statements(text)) expect(checkPfRule(r)).toEqual({ ok: true });
    expect(text).toContain('# pfctl -a ftp-proxy/4a3b2c1d.2 -f -');
  });

  it('without a range nothing of it is printed', () => {
    const c = config([]);
    expect(printRules(c, 'nftables', ruleOptions(c), NOW)).not.toMatch(/Pass-through|element inet ftp-proxy rdnat4/);
  });
});
