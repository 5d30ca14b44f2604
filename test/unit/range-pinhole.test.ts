// The range pinhole of tls_client passthrough, across the backends: its constructor and one-line form,
// that no backend's duplicate-key guard refuses two sessions the same range, that the fake records it,
// and that the nftables netlink fast path hands range elements to the runner (it encodes single keys).
import { describe, expect, it } from 'vitest';
import {
  describePinhole,
  isNoopRedirect,
  passivePinhole,
  passthroughPinhole,
  type Pinhole,
  PinholeConflict,
  PinholeKeys,
  type RuleOptions,
  type SessionEnds,
} from '../../src/firewall/backend.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { addOps, NftablesBackend, removeOps, touchesRanges } from '../../src/firewall/nftables.js';
import { fixedInstance, ID } from '../helpers/instance.js';
import { fakeKernel } from '../helpers/nfnl-kernel.js';
import { ProbeRunner } from '../helpers/probe-runner.js';
import { checkRequest, RequestRefused, type ValidationContext } from '../../src/privsep/validate.js';

const fwd: SessionEnds = { family: 4, client: '192.0.2.10', originalServer: '198.51.100.20', server: '198.51.100.20', proxy: '203.0.113.1' };
const rev: SessionEnds = { family: 4, client: '192.0.2.50', originalServer: '203.0.113.5', server: '10.0.0.21', proxy: '10.0.0.1' };
const v6: SessionEnds = { family: 6, client: '2001:db8:1::10', originalServer: '2001:db8:3::20', server: '2001:db8:3::20', proxy: '2001:db8:2::1' };

describe('passthroughPinhole', () => {
  it('C -> OS:LOW-HIGH => S, the ports kept, from P, as a passive pinhole NATs', () => {
    expect(passthroughPinhole(fwd, 50000, 50100)).toEqual({
      family: 4,
      kind: 'range',
      from: '192.0.2.10',
      to: '198.51.100.20',
      toPort: 50000,
      toPortHigh: 50100,
      rdrTo: '198.51.100.20',
      rdrPort: 50000,
      natFrom: '203.0.113.1',
    });
    // reverse mode: the public address's range goes to the internal server
    expect(passthroughPinhole(rev, 50000, 50100)).toMatchObject({ from: '192.0.2.50', to: '203.0.113.5', rdrTo: '10.0.0.21', natFrom: '10.0.0.1' });
  });

  it.each([
    [50100, 50000],
    [0, 10],
    [60000, 65536],
    [1.5, 10],
    [Number.NaN, 10],
  ])('refuses the range %s-%s', (low, high) => {
    expect(() => passthroughPinhole(fwd, low, high)).toThrow(RangeError);
  });

  it('describePinhole writes the range on both sides', () => {
    expect(describePinhole(passthroughPinhole(fwd, 50000, 50100))).toBe('192.0.2.10 -> 198.51.100.20:50000-50100 => 198.51.100.20:50000-50100 from 203.0.113.1');
    expect(describePinhole(passthroughPinhole(v6, 50000, 50100))).toBe('2001:db8:1::10 -> [2001:db8:3::20]:50000-50100 => [2001:db8:3::20]:50000-50100 from 2001:db8:2::1');
    // the others unchanged
    expect(describePinhole(passivePinhole(fwd, 40001, 50001))).toBe('192.0.2.10 -> 198.51.100.20:50001 => 198.51.100.20:40001 from 203.0.113.1');
  });
});

describe('the duplicate-key guard of iptables and pf (PinholeKeys)', () => {
  it('lets two sessions of one client hold the same range (FileZilla opens several connections to one server)', () => {
    const k = new PinholeKeys();
    const r = passthroughPinhole(fwd, 50000, 50100);
    k.claim('a.1', [r]);
    expect(() => k.claim('a.2', [r])).not.toThrow();
    // while single-use pinholes still may not share a key
    k.claim('a.1', [passivePinhole(fwd, 40001, 50001)]);
    expect(() => k.claim('a.2', [passivePinhole(fwd, 40002, 50001)])).toThrow(PinholeConflict);
  });
});

describe('FakeFirewall', () => {
  it('records a range pinhole, holds it until clear', async () => {
    const f = new FakeFirewall();
    const r = passthroughPinhole(fwd, 50000, 50100);
    await f.replace({ instance: f.instance, session: 3 }, [r]);
    expect(f.calls.at(-1)).toEqual({ op: 'replace', owner: `${f.instance}.3`, pinholes: [r] });
    expect(f.live.get(`${f.instance}.3`)).toEqual([r]);
    await f.clear({ instance: f.instance, session: 3 });
    expect(f.live.size).toBe(0);
  });
});

describe('nftables fast path and range pinholes', () => {
  const plain: RuleOptions = { log: 0, timeout: 30 };


  it('sends range elements through the runner (once per session), and single-use pinholes still over netlink', async () => {
    const k = fakeKernel({});
    const runner = new ProbeRunner(k.sent);
    const b = new NftablesBackend({ rules: plain, runner, instance: fixedInstance(), isAlive: async () => true, netlink: k.sys });
    await b.init();
    expect(b.fastPath).toBe(true);
    const scripts = runner.scripts.length;
    const batches = k.sent.length;
    const r: Pinhole = passthroughPinhole(fwd, 50000, 50100);
    await b.replace({ instance: ID, session: 1 }, [r]);
    expect(k.sent.length).toBe(batches);
    expect(runner.scripts.slice(scripts)).toEqual([
      'create element inet ftp-proxy rangev4 { 192.0.2.10 . 198.51.100.20 . 50000-50100 comment "4a3b2c1d.1" : goto rpinhole }\n' +
        'create element inet ftp-proxy rdnat4 { 192.0.2.10 . 198.51.100.20 . 50000-50100 comment "4a3b2c1d.1" : 198.51.100.20 }\n' +
        'create element inet ftp-proxy rfrom4 { 192.0.2.10 . 198.51.100.20 . 50000-50100 . 198.51.100.20 comment "4a3b2c1d.1" : 203.0.113.1 }\n',
    ]);
    await b.replace({ instance: ID, session: 2 }, [passivePinhole(fwd, 40001, 50001)]);
    expect(k.sent.length).toBe(batches + 1);
    await b.clear({ instance: ID, session: 1 });
    expect(runner.scripts.at(-1)).toMatch(/^add element inet ftp-proxy rangev4 .*\ndelete element inet ftp-proxy rangev4 /);
    expect(k.sent.length).toBe(batches + 1);
  });

  it('touchesRanges tells the range maps from the others', () => {
    expect(touchesRanges(addOps([passthroughPinhole(fwd, 1, 2)], 'x', 'pinhole', 30))).toBe(true);
    expect(touchesRanges(removeOps([passthroughPinhole(fwd, 1, 2)], 'pinhole-0a1b2c3d'))).toBe(true);
    expect(touchesRanges(addOps([passivePinhole(fwd, 40001, 50001)], 'x', 'pinhole-0a1b2c3d', 30))).toBe(false);
  });
});

describe('privilege separation: the privileged process checks a range pinhole', () => {
  // C 192.168.1.10, OS/S 203.0.113.5, P 198.51.100.1 (this host)
  const ctx: ValidationContext = {
    instance: '0a1b2c3d',
    port20: false,
    isLocal: (a) => a === '198.51.100.1',
    holders: new Set(),
    maxHolders: 10,
    // the policy's tls_passthrough_ports, as the privileged process read them
    passthrough: { any: { low: 50000, high: 50100 }, byServer: new Map([['203.0.113.9', { low: 40000, high: 40010 }]]) },
  };
  const ends4: SessionEnds = { family: 4, client: '192.168.1.10', originalServer: '203.0.113.5', server: '203.0.113.5', proxy: '198.51.100.1' };
  const req = (pin: unknown) => ({ op: 'replace', owner: { instance: '0a1b2c3d', session: 3 }, pinholes: [pin] });
  const range = passthroughPinhole(ends4, 50000, 50100);

  it('takes the pinhole passthroughPinhole makes, as it is', () => {
    expect(checkRequest(req(range), ctx)).toEqual({ op: 'replace', owner: { instance: '0a1b2c3d', session: 3 }, pinholes: [range] });
  });

  it('refuses every range when the policy has no tls_client passthrough (a compromised network process)', () => {
    for (const passthrough of [null, undefined]) {
      expect(() => checkRequest(req(range), { ...ctx, passthrough })).toThrow(/no tls_passthrough_ports for 203\.0\.113\.5/);
    }
  });

  it.each([
    ['a range reaching below 1024', { ...range, toPort: 22, rdrPort: 22 }, /below 1024/],
    ['HIGH below LOW', { ...range, toPortHigh: 49999 }, /toPortHigh/],
    ['no HIGH', { ...range, toPortHigh: undefined }, /toPortHigh/],
    ['another port behind it', { ...range, rdrPort: 22 }, /rdrPort/],
    ['a port translated', { ...range, rdrPort: 50001 }, /keeps its ports/],
    ['a source that is not this host', { ...range, natFrom: '192.0.2.99' }, /not an address of this host/],
    ['toPortHigh on a passive pinhole', { ...passivePinhole(ends4, 40000, 50000), toPortHigh: 50100 }, /toPortHigh is for range/],
    ['a range with source port 20', { ...range, natPort: 20 }, /natPort/],
    ['a wider range than the policy\'s', { ...range, toPortHigh: 50200 }, /not the policy's tls_passthrough_ports 50000-50100/],
    ['another range than the policy\'s', { ...range, toPort: 60000, rdrPort: 60000, toPortHigh: 60100 }, /not the policy's tls_passthrough_ports/],
    ['the any-server range for a server that has its own', passthroughPinhole({ ...ends4, originalServer: '203.0.113.9', server: '203.0.113.9' }, 50000, 50100), /40000-40010 for 203\.0\.113\.9/],
  ])('refuses %s', (_what, pin, why) => {
    let err: unknown;
    try {
      checkRequest(req(pin), ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RequestRefused);
    expect((err as Error).message).toMatch(why);
  });
});

describe('isNoopRedirect: a drawn proxy port equal to the server port in forward mode is drawn again', () => {
  const fwd: SessionEnds = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
  const rev: SessionEnds = { ...fwd, originalServer: '203.0.113.5', server: '10.0.0.21' };
  it.each([
    ['forward, pp = the server port', passivePinhole(fwd, 52004, 52004), true],
    ['forward, another pp', passivePinhole(fwd, 52004, 52005), false],
    ['reverse, pp = the server port (the address changes)', passivePinhole(rev, 52004, 52004), false],
    ['a pass-through range (same ports by design, never single-use)', passthroughPinhole(fwd, 52000, 52099), false],
  ])('%s', (_what, p, want) => {
    expect(isNoopRedirect(p)).toBe(want);
  });
});
