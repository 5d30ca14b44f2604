// The nftables backend without a kernel: the exact scripts it produces (golden files), and its
// transaction logic against a runner that records scripts and answers like nft would.
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { activePinhole, parseMark, parseTcClass, passivePinhole, passthroughPinhole, PinholeConflict, type RuleOptions, type SessionEnds } from '../../src/firewall/backend.js';
import { FirewallError } from '../../src/firewall/backend.js';
import type { NftRunner } from '../../src/firewall/nft-runner.js';
import { cleanNftError } from '../../src/firewall/nft-runner.js';
import { fixedInstance, ID } from '../helpers/instance.js';
import {
  addScript,
  NftablesBackend,
  type NftJson,
  instanceIds,
  ownedElements,
  removeScript,
  tableScript,
  variantChain,
} from '../../src/firewall/nftables.js';

const golden = (name: string, actual: string): void => {
  const path = new URL(`../golden/nftables/${name}`, import.meta.url);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, 'utf8'));
};

const ends: SessionEnds = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
const plain: RuleOptions = { log: 0, timeout: 30 };

describe('scripts', () => {
  it('static table, no flags', () => golden('table-plain.nft', tableScript(plain, null)));
  it('static table with -v -T 0x10', () => golden('table-v-tag.nft', tableScript({ log: 1, tag: '0x10', timeout: 30 }, null)));
  it('static table with -vv -q 1:10 (per-packet rule with a conntrack label)', () =>
    golden('table-vv-queue.nft', tableScript({ log: 2, queue: '1:10', timeout: 30 }, { label: 126, present: false })));
  it('does not add the per-packet rule twice', () => {
    expect(tableScript({ log: 2, timeout: 30 }, { label: 126, present: true })).not.toMatch(/add rule inet ftp-proxy perpacket/);
    expect(tableScript({ log: 2, timeout: 30 }, { label: 126, present: false })).toMatch(
      /add rule inet ftp-proxy perpacket ct label 126 counter log prefix "ftp-proxy: " comment "pinhole-[0-9a-f]{8}"/,
    );
  });

  it('passive, active, active with -r, and IPv6 elements', () => {
    const v6: SessionEnds = { family: 6, client: '2001:db8::10', originalServer: '2001:db8:ffff::21', server: '2001:db8:ffff::21', proxy: '2001:db8::1' };
    const pins = [
      passivePinhole(ends, 50000, 61000),
      activePinhole(ends, 40123, 55555, false),
      activePinhole(ends, 40123, 55556, true),
      passivePinhole(v6, 50000, 61000),
    ];
    golden('elements.nft', [...addScript(pins, '4a3b2c1d.7', 'pinhole', 30), ...removeScript(pins, 'pinhole')].join('\n') + '\n');
  });

  it('range pinholes (tls_client passthrough): plain and with -v/-T/-q, IPv4 and IPv6, created and removed', () => {
    const v6: SessionEnds = { family: 6, client: '2001:db8::10', originalServer: '2001:db8:ffff::21', server: '2001:db8:ffff::21', proxy: '2001:db8::1' };
    const pins = [passthroughPinhole(ends, 50000, 50100), passthroughPinhole(v6, 50000, 50100)];
    const variant = variantChain({ log: 1, tag: '0x10', timeout: 30 });
    golden(
      'range.nft',
      [
        ...addScript(pins, '4a3b2c1d.7', 'pinhole', 30),
        ...removeScript(pins, 'pinhole'),
        ...addScript(pins, '4a3b2c1d.8', variant, 30),
        ...removeScript(pins, variant),
      ].join('\n') + '\n',
    );
  });

  it('a range pinhole: interval elements keyed C . OS . LOW-HIGH, S without a port, no timeout, nothing single-use', () => {
    const plainAdd = addScript([passthroughPinhole(ends, 50000, 50100)], '1.2', 'pinhole', 30);
    expect(plainAdd).toEqual([
      'create element inet ftp-proxy rangev4 { 192.168.1.10 . 198.51.100.21 . 50000-50100 comment "1.2" : goto rpinhole }',
      'create element inet ftp-proxy rdnat4 { 192.168.1.10 . 198.51.100.21 . 50000-50100 comment "1.2" : 198.51.100.21 }',
      'create element inet ftp-proxy rfrom4 { 192.168.1.10 . 198.51.100.21 . 50000-50100 . 198.51.100.21 comment "1.2" : 198.51.100.1 }',
    ]);
    const flagged = addScript([passthroughPinhole(ends, 50000, 50100)], '1.2', 'pinhole-0a1b2c3d', 30);
    expect(flagged[0]).toBe('create element inet ftp-proxy rangev4 { 192.168.1.10 . 198.51.100.21 . 50000-50100 comment "1.2" : goto rpinhole-0a1b2c3d }');
    const all = [...plainAdd, ...flagged, ...removeScript([passthroughPinhole(ends, 50000, 50100)], 'pinhole-0a1b2c3d')].join('\n');
    expect(all).not.toMatch(/timeout|once| dnat4 | from4 /);
  });

  it('the table: interval maps without timeout, range rules after the once-rules, range chains apart from the pinhole chains', () => {
    const plainTable = tableScript(plain, null).split('\n');
    // forward mode keeps address and port: no `ct status dnat` to see, so the range chain labels the
    // connection, srcnat finds it by the label (and the admin's forward chain accepts it by it)
    expect(plainTable.filter((l) => l.startsWith('add rule inet ftp-proxy rpinhole '))).toEqual([
      'add rule inet ftp-proxy rpinhole ct label set 127',
      'add rule inet ftp-proxy rpinhole dnat ip to ip saddr . ip daddr . tcp dport map @rdnat4',
      'add rule inet ftp-proxy rpinhole dnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @rdnat6',
    ]);
    expect(plainTable).toContain('add rule inet ftp-proxy srcnat ct label 127 snat ip to ip saddr . ip daddr . tcp dport . ct original ip daddr map @rfrom4');
    const t = tableScript({ log: 1, timeout: 30 }, null).split('\n');
    expect(t).toContain('add map inet ftp-proxy rdnat4 { type ipv4_addr . ipv4_addr . inet_service : ipv4_addr; flags interval; }');
    expect(t).toContain('add map inet ftp-proxy rfrom6 { type ipv6_addr . ipv6_addr . inet_service . ipv6_addr : ipv6_addr; flags interval; }');
    const dstnat = t.filter((l) => l.startsWith('add rule inet ftp-proxy dstnat '));
    expect(dstnat.findIndex((l) => /@rangev4/.test(l))).toBeGreaterThan(dstnat.findLastIndex((l) => /@once/.test(l)));
    const chain = variantChain({ log: 1, timeout: 30 });
    // the range chain DNATs through @rdnatN only, never @dnatN (a used passive pinhole's key may lie in a range)
    expect(t.filter((l) => l.startsWith(`add rule inet ftp-proxy r${chain} `))).toEqual([
      `add rule inet ftp-proxy r${chain} ct label set 127 log prefix "ftp-proxy: "`,
      `add rule inet ftp-proxy r${chain} dnat ip to ip saddr . ip daddr . tcp dport map @rdnat4`,
      `add rule inet ftp-proxy r${chain} dnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @rdnat6`,
    ]);
    // without ranges (an old kernel): none of it
    expect(tableScript(plain, null, false)).not.toMatch(/rdnat|rfrom|rangev|flags interval/);
  });

  it('keys the DNAT on what the SYN carries and the SNAT on the tuple after DNAT plus the original destination', () => {
    const [once, dnat, snat] = addScript([passivePinhole(ends, 50000, 61000)], '1.2', 'pinhole', 30);
    expect(once).toBe('create element inet ftp-proxy once4 { 192.168.1.10 . 198.51.100.21 . 61000 timeout 30s comment "1.2" }');
    expect(dnat).toContain(': 198.51.100.21 . 50000 }');
    expect(snat).toBe(
      'create element inet ftp-proxy from4 { 192.168.1.10 . 198.51.100.21 . 50000 . 198.51.100.21 . 61000 timeout 30s comment "1.2" : 198.51.100.1 }',
    );
  });

  it('two sessions of one client given the same passive port by one server get distinct keys in every map', () => {
    // Same C, same S:p; only the proxy port differs. A key without it made the second create EEXIST on
    // every retry (425 Can't open data connection; the e2e load test saw it about once in 500).
    const a = addScript([passivePinhole(ends, 50000, 61000)], '1.2', 'pinhole', 30);
    const b = addScript([passivePinhole(ends, 50000, 61001)], '1.3', 'pinhole', 30);
    const keyOf = (line: string): string => line.replace(/ timeout .*$/, '');
    for (const [i, line] of a.entries()) expect(keyOf(line)).not.toBe(keyOf(b[i]!));
    // and the same for active pinholes (one client port, two sessions to one server)
    const c = addScript([activePinhole(ends, 40123, 55555, true)], '1.2', 'pinhole', 30);
    const d = addScript([activePinhole(ends, 40123, 55556, true)], '1.3', 'pinhole', 30);
    for (const [i, line] of c.entries()) expect(keyOf(line)).not.toBe(keyOf(d[i]!));
  });

  it('puts no jump into a map element without -v/-T/-q (the kernel re-checks every such element at each commit)', () => {
    const plainScript = addScript([passivePinhole(ends, 50000, 61000)], '1.2', 'pinhole', 30);
    expect(plainScript.join('\n')).not.toMatch(/goto|pin4/);
    const flagged = addScript([passivePinhole(ends, 50000, 61000)], '1.2', 'pinhole-0a1b2c3d', 30);
    expect(flagged.map((l) => l.split(' ')[4])).toEqual(['oncev4', 'pin4', 'dnat4', 'from4']);
    expect(flagged[1]).toContain(': goto pinhole-0a1b2c3d }');
  });

  it('names one chain per flag combination', () => {
    expect(variantChain(plain)).toBe('pinhole');
    expect(variantChain({ log: 1, timeout: 30 })).toMatch(/^pinhole-[0-9a-f]{8}$/);
    expect(variantChain({ log: 1, timeout: 30 })).not.toBe(variantChain({ log: 2, timeout: 30 }));
    expect(variantChain({ log: 0, tag: '1', timeout: 30 })).not.toBe(variantChain({ log: 0, tag: '2', timeout: 30 }));
    expect(variantChain({ log: 0, timeout: 99 })).toBe('pinhole'); // the timeout is per element, not a rule
  });

  it.each([
    ['1', 1],
    ['4294967295', 0xffffffff],
    ['0x10', 16],
    ['0xFFFFFFFF', 0xffffffff],
    ['0', null],
    ['4294967296', null],
    ['0x100000000', null],
    ['tagname', null],
    ['-1', null],
    ['010', null],
  ])('-T %s as a conntrack mark -> %s', (tag, mark) => expect(parseMark(tag)).toBe(mark));

  it.each([
    ['1:10', '1:10'],
    ['FFFF:a', 'ffff:a'],
    ['1', null],
    ['1:2:3', null],
    ['queue0', null],
    ['12345:1', null],
  ])('-q %s as a tc class -> %s', (q, cls) => expect(parseTcClass(q)).toBe(cls));
});

describe('cleanNftError', () => {
  it('keeps the first error and its command, drops the carets', () => {
    const stderr =
      '/dev/stdin:3:1-30: Error: Could not process rule: File exists\n' +
      'create element inet ftp-proxy dnat4 { 1.2.3.4 . 5.6.7.8 . 50000 : 9.9.9.9 . 2000 }\n' +
      '                                      ^^^^^^^^^^^^^^^^^^^^^^^^^\n';
    expect(cleanNftError(stderr)).toBe(
      'Could not process rule: File exists (create element inet ftp-proxy dnat4 { 1.2.3.4 . 5.6.7.8 . 50000 : 9.9.9.9 . 2000 })',
    );
    expect(cleanNftError('Error: No such file or directory\n')).toBe('No such file or directory');
  });
});

/** Answers like nft: fails scripts that match a rule, records the rest. */
class RecordingRunner implements NftRunner {
  readonly kind = 'nft' as const;
  readonly scripts: string[] = [];
  listing: NftJson | null = { nftables: [] };
  failNext: { match: RegExp; message: string }[] = [];
  closed = false;

  async run(script: string): Promise<string> {
    const i = this.failNext.findIndex((f) => f.match.test(script));
    if (i >= 0) {
      const [f] = this.failNext.splice(i, 1);
      throw new FirewallError(f!.message, script);
    }
    this.scripts.push(script);
    if (script.startsWith('delete table')) this.listing = null;
    return '';
  }

  async json(): Promise<unknown> {
    if (!this.listing) throw new FirewallError('No such file or directory');
    return this.listing;
  }

  close(): void {
    this.closed = true;
  }
}

function backend(runner: RecordingRunner, alive: (id: string) => boolean = () => true, warn: string[] = []) {
  return new NftablesBackend({ rules: plain, runner, instance: fixedInstance(), isAlive: async (id) => alive(id), warn: (m) => warn.push(m) });
}

const owner = { instance: '4a3b2c1d', session: 7 };

describe('NftablesBackend', () => {
  it('init applies the table script', async () => {
    const r = new RecordingRunner();
    await backend(r).init();
    expect(r.scripts[0]).toBe(tableScript(plain, null) + `add element inet ftp-proxy instances { 0x${ID} }\n`);
  });

  it('replace removes the previous negotiation and creates the new one in one transaction', async () => {
    const r = new RecordingRunner();
    const b = backend(r);
    await b.replace(owner, [passivePinhole(ends, 50000, 61000)]);
    await b.replace(owner, [activePinhole(ends, 40123, 55555, false)]);
    expect(r.scripts).toHaveLength(2);
    const second = r.scripts[1]!.trim().split('\n');
    expect(second.slice(0, 6)).toEqual(removeScript([passivePinhole(ends, 50000, 61000)], 'pinhole'));
    expect(second.slice(6)).toEqual(addScript([activePinhole(ends, 40123, 55555, false)], '4a3b2c1d.7', 'pinhole', 30));
    await b.clear(owner);
    expect(r.scripts[2]!.trim().split('\n')).toEqual(removeScript([activePinhole(ends, 40123, 55555, false)], 'pinhole'));
    await b.clear(owner); // nothing left: no transaction
    expect(r.scripts).toHaveLength(3);
  });

  it('turns EEXIST into PinholeConflict and keeps the old pinholes on record', async () => {
    const r = new RecordingRunner();
    const b = backend(r);
    await b.replace(owner, [passivePinhole(ends, 50000, 61000)]);
    r.failNext.push({ match: /61001/, message: 'Could not process rule: File exists (create element ...)' });
    await expect(b.replace(owner, [passivePinhole(ends, 50000, 61001)])).rejects.toBeInstanceOf(PinholeConflict);
    await b.clear(owner);
    expect(r.scripts.at(-1)).toContain('61000');
  });

  it('recreates the table when an admin reload removed it, then retries the additions', async () => {
    const r = new RecordingRunner();
    const warn: string[] = [];
    const b = backend(r, () => true, warn);
    await b.replace(owner, [passivePinhole(ends, 50000, 61000)]);
    r.failNext.push({ match: /create element/, message: 'Could not process rule: No such file or directory' });
    await b.replace(owner, [passivePinhole(ends, 50000, 61001)]);
    expect(warn[0]).toMatch(/missing or damaged/);
    expect(r.scripts.some((s) => s.startsWith(tableScript(plain, null)))).toBe(true);
    const last = r.scripts.at(-1)!;
    expect(last).toMatch(/^create element/);
    expect(last).not.toMatch(/delete element/);
    expect(last).toContain('61001');
  });

  it('repairs a damaged table without sweeping: the elements of our other live sessions survive', async () => {
    // Before: the repair re-ran init(), whose sweep deleted every element of our own pid.
    const r = new RecordingRunner();
    const warn: string[] = [];
    const b = backend(r, () => false, warn); // even were every other instance dead, a repair sweeps nothing
    await b.replace({ instance: ID, session: 8 }, [passivePinhole(ends, 50000, 62000)]);
    r.listing = {
      nftables: [
        { set: { name: 'once4', elem: [{ elem: { val: { concat: ['192.168.1.10', '198.51.100.21', 62000] }, comment: `${ID}.8` } }] } },
        { set: { name: 'once4', elem: [{ elem: { val: { concat: ['192.168.1.10', '198.51.100.21', 62001] }, comment: '0000000a.1' } }] } },
      ],
    };
    const before = r.scripts.length;
    // an admin deleted one of our maps: ENOENT for this negotiation, twice at once (one repair for both)
    r.failNext.push({ match: /61000/, message: 'Could not process rule: No such file or directory' });
    r.failNext.push({ match: /61001/, message: 'Could not process rule: No such file or directory' });
    await Promise.all([b.replace(owner, [passivePinhole(ends, 50000, 61000)]), b.replace({ instance: ID, session: 9 }, [passivePinhole(ends, 50000, 61001)])]);
    const after = r.scripts.slice(before);
    expect(after.filter((x) => x.startsWith(tableScript(plain, null)))).toHaveLength(1);
    expect(after.join('')).not.toMatch(/delete element/);
    expect(after.filter((x) => x.startsWith('create element'))).toHaveLength(2);
    expect(warn.filter((w) => /missing or damaged/.test(w))).toHaveLength(1);
  });

  it('passes other failures on as they are', async () => {
    const r = new RecordingRunner();
    r.failNext.push({ match: /create/, message: 'Could not process rule: Operation not permitted' });
    await expect(backend(r).replace(owner, [passivePinhole(ends, 50000, 61000)])).rejects.toThrow(/Operation not permitted/);
  });

  const listing = (comments: string[]): NftJson => ({
    nftables: [
      { map: { name: 'dnat4', elem: comments.map((c, i) => [{ elem: { val: { concat: ['10.0.0.1', '10.0.0.2', 50000 + i] }, comment: c } }, { concat: ['10.0.0.3', 21] }]) } },
      { set: { name: 'once4', elem: comments.map((c, i) => ({ elem: { val: { concat: ['10.0.0.1', '10.0.0.2', 50000 + i] }, comment: c } })) } },
      { set: { name: 'once6', elem: [{ elem: { val: { concat: ['::1', '::2', 1] } } }] } },
    ],
  });

  const A = '0000000a';
  const B = '0000000b';
  const C = '0000000c';

  it('reads the owners of elements from a JSON listing (an earlier version\'s <pid>.<session> is nobody\'s)', () => {
    expect(ownedElements(listing([`${A}.1`, 'junk', `${B}.3`, '4242.7']))).toEqual([
      { object: 'dnat4', key: '10.0.0.1 . 10.0.0.2 . 50000', instance: A, session: 1 },
      { object: 'dnat4', key: '10.0.0.1 . 10.0.0.2 . 50002', instance: B, session: 3 },
      { object: 'once4', key: '10.0.0.1 . 10.0.0.2 . 50000', instance: A, session: 1 },
      { object: 'once4', key: '10.0.0.1 . 10.0.0.2 . 50002', instance: B, session: 3 },
    ]);
  });

  it('reads the instances set: marks as nft lists them (numbers) become 8-digit ids', () => {
    expect(instanceIds({ nftables: [{ set: { name: 'instances', elem: [0x4a3b2c1d, 10, '0xff'] } }] })).toEqual([ID, A, '000000ff']);
  });

  it('sweeps at start only what instances proven dead left; never a live one, never its own id', async () => {
    const r = new RecordingRunner();
    r.listing = listing([`${A}.1`, `${B}.2`, `${C}.3`, `${ID}.9`]);
    const warn: string[] = [];
    const asked: string[] = [];
    await backend(
      r,
      (id) => {
        asked.push(id);
        return id === B;
      },
      warn,
    ).init();
    expect(asked.sort()).toEqual([A, B, C]); // our own id is never put to the test
    const sweep = r.scripts[1]!;
    expect(sweep).toContain('delete element inet ftp-proxy dnat4 { 10.0.0.1 . 10.0.0.2 . 50000 }');
    expect(sweep).toContain('delete element inet ftp-proxy once4 { 10.0.0.1 . 10.0.0.2 . 50002 }');
    expect(sweep).not.toContain('50001');
    expect(sweep).not.toContain('50003');
    expect(warn.at(-1)).toMatch(/removed 4 stale element\(s\) left by 2 dead instance\(s\)/);
  });

  it('two instances with the same pid (two PID namespaces) do not sweep each other: only the id counts', async () => {
    // Before: the owner was "<pid>.<session>" and the sweep removed every element with its own pid.
    const r = new RecordingRunner();
    r.listing = listing([`${A}.1`]); // another instance, also pid 1 in its namespace, alive
    await backend(r, (id) => id === A).init();
    expect(r.scripts.join('')).not.toMatch(/delete element/);
  });

  it('close drops the table only when the instances set is empty (after forgetting the proven dead)', async () => {
    const r = new RecordingRunner();
    await backend(r).close();
    expect(r.scripts.at(-1)).toBe('delete table inet ftp-proxy\n');
    expect(r.closed).toBe(true);
    const r2 = new RecordingRunner();
    r2.listing = { nftables: [{ set: { name: 'instances', elem: [0x4a3b2c1d, 0xb] } }] };
    await backend(r2, (id) => id === B).close();
    expect(r2.scripts).toContain(`add element inet ftp-proxy instances { 0x${ID} }\ndelete element inet ftp-proxy instances { 0x${ID} }\n`);
    expect(r2.scripts).not.toContain('delete table inet ftp-proxy\n');
    const r3 = new RecordingRunner();
    r3.listing = { nftables: [{ set: { name: 'instances', elem: [0x4a3b2c1d, 0xb] } }] };
    await backend(r3, () => false).close(); // B is gone: this was the last one
    expect(r3.scripts).toContain(`delete element inet ftp-proxy instances { 0x${B} }\n`);
    expect(r3.scripts).toContain('delete table inet ftp-proxy\n');
  });

  const rangeListing = (comment: string): NftJson => ({
    nftables: [
      { map: { name: 'rdnat4', elem: [[{ elem: { val: { concat: ['10.0.0.1', '10.0.0.2', { range: [50000, 50100] }] }, comment } }, '10.0.0.2']] } },
      { map: { name: 'rfrom4', elem: [[{ elem: { val: { concat: ['10.0.0.1', '10.0.0.2', { range: [50000, 50100] }, '10.0.0.2'] }, comment } }, '10.0.0.9']] } },
    ],
  });

  it('reads range elements ({"range": [low, high]} in nft -j) as keys nft takes back', () => {
    expect(ownedElements(rangeListing(`${A}.4`))).toEqual([
      { object: 'rdnat4', key: '10.0.0.1 . 10.0.0.2 . 50000-50100', instance: A, session: 4 },
      { object: 'rfrom4', key: '10.0.0.1 . 10.0.0.2 . 50000-50100 . 10.0.0.2', instance: A, session: 4 },
    ]);
  });

  it("the start-up sweep removes a dead instance's range pinholes", async () => {
    const r = new RecordingRunner();
    r.listing = rangeListing(`${A}.4`);
    await backend(r, () => false).init();
    expect(r.scripts[1]).toBe(
      'delete element inet ftp-proxy rdnat4 { 10.0.0.1 . 10.0.0.2 . 50000-50100 }\ndelete element inet ftp-proxy rfrom4 { 10.0.0.1 . 10.0.0.2 . 50000-50100 . 10.0.0.2 }\n',
    );
  });

  it('start-up forgets instances that died, and claims and releases its own identity', async () => {
    const r = new RecordingRunner();
    const instance = fixedInstance();
    r.listing = { nftables: [{ set: { name: 'instances', elem: [0xa, 0xb] } }] };
    const b = new NftablesBackend({ rules: plain, runner: r, instance, isAlive: async (id) => id === B });
    await b.init();
    expect(instance.claimed).toBe(1);
    expect(r.scripts).toContain(`delete element inet ftp-proxy instances { 0x${A} }\n`);
    await b.close();
    expect(instance.released).toBe(1);
  });
});


describe('NftablesBackend: range pinholes (tls_client passthrough)', () => {
  const range = passthroughPinhole(ends, 50000, 50100);
  const s1 = { instance: ID, session: 1 };
  const s2 = { instance: ID, session: 2 };

  it('replace creates its elements (no timeout); clear removes them; nothing else', async () => {
    const r = new RecordingRunner();
    const b = backend(r);
    await b.replace(s1, [range]);
    expect(r.scripts).toEqual([addScript([range], `${ID}.1`, 'pinhole', 30).join('\n') + '\n']);
    await b.clear(s1);
    expect(r.scripts[1]).toBe(removeScript([range], 'pinhole').join('\n') + '\n');
    await b.clear(s1);
    expect(r.scripts).toHaveLength(2);
  });

  it('two sessions of one client to one server share one set of elements; it goes with the last, renamed when its holder goes first', async () => {
    // FileZilla opens several connections to one server: each passthrough session wants the same range.
    const r = new RecordingRunner();
    const b = backend(r);
    await b.replace(s1, [range]);
    await b.replace(s2, [range]); // the same elements: nothing to do (a create would be EEXIST)
    expect(r.scripts).toHaveLength(1);
    await b.clear(s1); // the elements name session 1: written again under session 2's name
    expect(r.scripts[1]).toBe([...removeScript([range], 'pinhole'), ...addScript([range], `${ID}.2`, 'pinhole', 30)].join('\n') + '\n');
    await b.clear(s2);
    expect(r.scripts[2]).toBe(removeScript([range], 'pinhole').join('\n') + '\n');
    // a second holder leaving first changes nothing in the kernel
    await b.replace(s1, [range]);
    await b.replace(s2, [range]);
    await b.clear(s2);
    expect(r.scripts).toHaveLength(4);
    await b.close();
    expect(r.scripts[4]).toBe(removeScript([range], 'pinhole').join('\n') + '\n');
  });

  it('concurrent sessions asking for one range at once create it once', async () => {
    const r = new RecordingRunner();
    const b = backend(r);
    await Promise.all([b.replace(s1, [range]), b.replace(s2, [range]), b.replace({ instance: ID, session: 3 }, [range])]);
    expect(r.scripts.filter((x) => x.includes('create element'))).toHaveLength(1);
    await Promise.all([b.clear(s1), b.clear(s2), b.clear({ instance: ID, session: 3 })]);
    expect(r.scripts.filter((x) => /^add element .*\ndelete element/s.test(x) && !x.includes('create'))).toHaveLength(1);
  });

  it('an overlapping range of another instance (EEXIST) is a PinholeConflict, and nothing is recorded', async () => {
    const r = new RecordingRunner();
    const b = backend(r);
    r.failNext.push({ match: /rdnat4/, message: 'Could not process rule: File exists (create element ...)' });
    await expect(b.replace(s1, [range])).rejects.toBeInstanceOf(PinholeConflict);
    await b.clear(s1);
    expect(r.scripts).toEqual([]);
    await b.replace(s1, [range]); // not believed held by a holder that never got it
    expect(r.scripts).toHaveLength(1);
  });

  it('a repair puts the live range pinholes back (they outlive a ruleset reload; once-pinholes do not)', async () => {
    const r = new RecordingRunner();
    const warn: string[] = [];
    const b = backend(r, () => true, warn);
    await b.replace(s1, [range]);
    r.failNext.push({ match: /61000/, message: 'Could not process rule: No such file or directory' });
    await b.replace(s2, [passivePinhole(ends, 50000, 61000)]);
    expect(warn[0]).toMatch(/missing or damaged/);
    const back = addScript([range], `${ID}.1`, 'pinhole', 30).map((l) => l.replace(/^create /, 'add '));
    expect(r.scripts).toContain(back.join('\n') + '\n');
  });

  it('a kernel or nft without concatenated ranges: the table without them, a warning, and a range pinhole refused', async () => {
    const r = new RecordingRunner();
    const warn: string[] = [];
    r.failNext.push({ match: /rdnat4/, message: 'Could not process rule: Operation not supported' });
    const b = backend(r, () => true, warn);
    await b.init();
    expect(r.scripts[0]).toBe(tableScript(plain, null, false) + `add element inet ftp-proxy instances { 0x${ID} }\n`);
    expect(warn[0]).toMatch(/no range pinholes \(tls_client passthrough\).*Linux 5\.6 and nft 0\.9\.4.*Operation not supported/);
    await expect(b.replace(s1, [range])).rejects.toThrow(/cannot hold range pinholes/);
    await b.replace(s1, [passivePinhole(ends, 50000, 61000)]); // the rest works as before
  });
});
