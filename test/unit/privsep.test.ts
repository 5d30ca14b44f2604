// Privilege separation: what the privileged process accepts from the network process (table-driven:
// everything a compromised network process might send), how the network process's stub maps the
// answers back onto the backends' errors, and when the daemon splits at all.
import { describe, expect, it } from 'vitest';
import { FirewallError, type Pinhole, PinholeConflict } from '../../src/firewall/backend.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { memoryLog } from '../../src/log.js';
import { localCache, RequestHandler } from '../../src/privsep/apply.js';
import { PrivsepFirewall } from '../../src/privsep/client.js';
import { dropArgs } from '../../src/privsep/parent.js';
import { plan } from '../../src/privsep/plan.js';
import type { ToParent } from '../../src/privsep/protocol.js';
import { canonical, isIPv6 } from '../../src/net/address.js';
import { checkRequest, isCanonicalIPv6, RequestRefused, type ValidationContext } from '../../src/privsep/validate.js';

const ID = '0a1b2c3d';
const LOCAL = new Set(['198.51.100.1', '192.168.1.1', '2001:db8::1']);
const ctx = (over: Partial<ValidationContext> = {}): ValidationContext => ({
  instance: ID,
  port20: false,
  isLocal: (a) => LOCAL.has(a),
  holders: new Set<number>(),
  maxHolders: 100,
  ...over,
});
const owner = { instance: ID, session: 7 };
// C 192.168.1.10, OS/S 203.0.113.5, P 198.51.100.1 (this host)
const passive: Pinhole = { family: 4, kind: 'passive', from: '192.168.1.10', to: '203.0.113.5', toPort: 50000, rdrTo: '203.0.113.5', rdrPort: 40000, natFrom: '198.51.100.1' };
const active: Pinhole = { family: 4, kind: 'active', from: '203.0.113.5', to: '198.51.100.1', toPort: 50001, rdrTo: '192.168.1.10', rdrPort: 40001, natFrom: '203.0.113.5' };
const local = (side: 'client' | 'server', over: Partial<Pinhole> = {}): Pinhole =>
  side === 'client'
    ? { family: 4, kind: 'local', side, from: '192.168.1.10', to: '203.0.113.5', toPort: 50002, rdrTo: '192.168.1.1', rdrPort: 33000, natFrom: '192.168.1.10', ...over }
    : { family: 4, kind: 'local', side, from: '203.0.113.5', to: '198.51.100.1', toPort: 50003, rdrTo: '198.51.100.1', rdrPort: 33001, natFrom: '203.0.113.5', ...over };
const v6: Pinhole = { family: 6, kind: 'passive', from: '2001:db8:1::10', to: '2001:db8:2::5', toPort: 50000, rdrTo: '2001:db8:2::5', rdrPort: 40000, natFrom: '2001:db8::1' };
const replace = (pinholes: unknown, o: unknown = owner) => ({ id: 1, op: 'replace', owner: o, pinholes });

describe('checkRequest: what the privileged process applies', () => {
  it.each<[string, unknown, Partial<ValidationContext>?]>([
    ['a passive pinhole', replace([passive])],
    ['an active pinhole', replace([active])],
    ['an active pinhole from port 20 with -r', replace([{ ...active, natPort: 20 }]), { port20: true }],
    ['the two local pinholes of a data_mode join', replace([local('client'), local('server')])],
    ['an IPv6 pinhole', replace([v6])],
    ['a clear', { id: 2, op: 'clear', owner }],
    ['a session that already holds pinholes when -m are held', replace([passive]), { holders: new Set([7]), maxHolders: 1 }],
  ])('accepts %s', (_name, req, over) => {
    expect(() => checkRequest(req, ctx(over))).not.toThrow();
  });

  it.each<[string, unknown, RegExp, Partial<ValidationContext>?]>([
    ['garbage', 'rm -rf /', /not an object/],
    ['null', null, /not an object/],
    ['an array', [passive], /not an object/],
    ['an unknown request', { id: 1, op: 'exec', cmd: '/bin/sh' }, /unknown request "exec"/],
    ['another instance\'s owner', replace([passive], { instance: 'ffffffff', session: 7 }), /owner instance "ffffffff" is not this instance/],
    ['an owner with more fields', replace([passive], { ...owner, pid: 1 }), /malformed owner/],
    ['session 0', replace([passive], { instance: ID, session: 0 }), /malformed session id/],
    ['a fractional session', replace([passive], { instance: ID, session: 1.5 }), /malformed session id/],
    ['a string session', replace([passive], { instance: ID, session: '7' }), /malformed session id/],
    ['no pinholes', replace([]), /1 to 2 pinholes/],
    ['three pinholes', replace([passive, passive, passive]), /1 to 2 pinholes/],
    ['pinholes not an array', replace({ 0: passive }), /1 to 2 pinholes/],
    ['two passive pinholes', replace([passive, { ...passive, toPort: 50010 }]), /only for a data_mode join/],
    ['two local pinholes of one side', replace([local('client'), local('client', { toPort: 50009 })]), /only for a data_mode join/],
    ['a family mix in one pinhole (v6 client, v4 rest)', replace([{ ...passive, from: '2001:db8:1::10' }]), /from: not a canonical IPv4 address/],
    ['family 6 with IPv4 addresses', replace([{ ...passive, family: 6 }]), /from: not a canonical IPv6 address/],
    ['a family mix across pinholes', replace([local('client'), { ...v6, kind: 'local', side: 'server', natFrom: v6.from, rdrTo: '2001:db8::1' }]), /more than one family/],
    ['family 5', replace([{ ...passive, family: 5 }]), /family must be 4 or 6/],
    ['an IPv4-mapped IPv6 address', replace([{ ...v6, from: '::ffff:192.168.1.10' }]), /from: not a canonical IPv6 address/],
    ['a non-canonical IPv6 address', replace([{ ...v6, from: '2001:DB8:1:0::10' }]), /from: not a canonical IPv6 address/],
    ['an address with a zone', replace([{ ...v6, rdrTo: 'fe80::1%eth0' }]), /rdrTo: not a canonical IPv6 address/],
    ['a host name', replace([{ ...passive, rdrTo: 'evil.example' }]), /rdrTo: not a canonical IPv4 address/],
    ['an address that is not a string', replace([{ ...passive, to: 3405803781 }]), /to: not an address/],
    ['a leading-zero IPv4', replace([{ ...passive, from: '192.168.001.10' }]), /from: not a canonical IPv4 address/],
    ['a redirect to port 22', replace([{ ...passive, rdrPort: 22 }]), /rdrPort below 1024/],
    ['a redirect to port 0', replace([{ ...passive, rdrPort: 0 }]), /rdrPort below 1024/],
    ['a redirect to port 70000', replace([{ ...passive, rdrPort: 70000 }]), /rdrPort below 1024 or not a port/],
    ['a string port', replace([{ ...passive, rdrPort: '2000' }]), /rdrPort below 1024/],
    ['a data port the proxy never draws (445)', replace([{ ...passive, toPort: 445 }]), /toPort outside 49152-65534/],
    ['a data port the proxy never draws (65535)', replace([{ ...passive, toPort: 65535 }]), /toPort outside 49152-65534/],
    ['natPort 20 without -r', replace([{ ...active, natPort: 20 }]), /natPort only 20/],
    ['natPort 20 on a passive pinhole', replace([{ ...passive, natPort: 20 }]), /natPort only 20/, { port20: true }],
    ['natPort 25 with -r', replace([{ ...active, natPort: 25 }]), /natPort only 20/, { port20: true }],
    ['an unknown field', replace([{ ...passive, comment: '"; flush ruleset' }]), /unexpected field "comment"/],
    ['pf routing domains (not on Linux)', replace([{ ...passive, rdomains: { client: 0, proxy: 0 } }]), /unexpected field "rdomains"/],
    ['an unknown kind', replace([{ ...passive, kind: 'forward' }]), /unknown kind/],
    ['a local pinhole without a side', replace([local('client', { side: undefined }), local('server')]), /needs side client or server/],
    ['a side on a passive pinhole', replace([{ ...passive, side: 'client' }]), /side is for local pinholes/],
    ['a local pinhole that rewrites its source', replace([local('client', { natFrom: '198.51.100.1' }), local('server')]), /keeps its source/],
    ['passive NAT from another host\'s address', replace([{ ...passive, natFrom: '198.51.100.99' }]), /198\.51\.100\.99 is not an address of this host/],
    ['an active pinhole to another host', replace([{ ...active, to: '10.9.9.9' }]), /10\.9\.9\.9 is not an address of this host/],
    ['a local pinhole sent to another host', replace([local('client', { rdrTo: '10.9.9.9' }), local('server')]), /10\.9\.9\.9 is not an address of this host/],
    ['a new session beyond -m', replace([passive]), /1 sessions already hold pinholes/, { holders: new Set([3]), maxHolders: 1 }],
  ])('refuses %s', (_name, req, why, over) => {
    let err: unknown;
    try {
      checkRequest(req, ctx(over));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RequestRefused);
    expect((err as Error).message).toMatch(why);
  });

  it('returns what it checked, rebuilt field by field (nothing else rides along)', () => {
    const r = checkRequest(replace([{ ...active, natPort: 20 }]), ctx({ port20: true }));
    expect(r).toEqual({ op: 'replace', owner, pinholes: [{ ...active, natPort: 20 }] });
  });
});

describe('isCanonicalIPv6: the text sessions send, checked without the general parser', () => {
  // Each agrees with net/address.ts's canonical(): canonical IPv6 text is exactly what it returns unchanged.
  it.each([
    ['2001:db8::1', true],
    ['::', true],
    ['::1', true],
    ['1::', true],
    ['2001:db8:1::10', true],
    ['2001:db8::1:0:0:1', true],
    ['1:0:0:2::3', true],
    ['1::2:0:0:3', true],
    ['a:b:c:d:e:f::', true],
    ['2001:db8:0:1:1:1:1:1', true],
    ['::102:304', true],
    ['fe80::1', true],
    ['2001:DB8::1', false],
    ['2001:0db8::1', false],
    ['2001:db8:0:0:1:0:0:1', false],
    ['1:0:0:0:2:0:0:3', false],
    ['2001:db8::1:0:0:0:1', false],
    ['2001:db8:0::1:1:1:1:1', false],
    ['1:2:3:4:5:6:7::', false],
    ['::ffff:c0a8:10a', false],
    ['::ffff:1.2.3.4', false],
    ['::1.2.3.4', false],
    ['0:0:0:0:0:ffff:a00:1', false],
    ['fe80::1%eth0', false],
    ['1:2:3:4:5:6:7:8:9', false],
    ['1::2::3', false],
    [':1::', false],
    ['12345::', false],
    ['', false],
  ])('%s: %s', (a, want) => {
    expect(isCanonicalIPv6(a)).toBe(want);
    // (net/address.ts writes an IPv4-mapped address as IPv4, and dotted forms are never canonical there)
    if (isIPv6(a) && !a.includes('.')) expect(canonical(a) === a).toBe(want);
  });
});

describe('RequestHandler: checked, applied in order, answered by id', () => {
  const setup = (maxHolders = 100) => {
    const fw = new FakeFirewall();
    const { log, lines } = memoryLog();
    const h = new RequestHandler(fw, { port20: false, maxHolders, isLocal: (a) => LOCAL.has(a) }, log);
    const own = (session: number) => ({ instance: fw.instance, session });
    return { fw, h, lines, own };
  };

  it('applies a good request; a taken key is answered as a conflict, a firewall error as an error', async () => {
    const { fw, h, own } = setup();
    expect(await h.handle(1, { op: 'replace', owner: own(1), pinholes: [passive] })).toEqual({ id: 1, ok: true });
    expect(fw.live.size).toBe(1);
    fw.taken.add(50000);
    expect(await h.handle(2, { op: 'replace', owner: own(2), pinholes: [passive] })).toEqual({ id: 2, ok: false, error: 'port 50000 in use', conflict: true });
    fw.failWith = 'nft: No such file or directory';
    expect(await h.handle(3, { op: 'clear', owner: own(1) })).toEqual({ id: 3, ok: false, error: 'nft: No such file or directory' });
  });

  it('a refused request never reaches the firewall; it is logged and answered with the reason', async () => {
    const { fw, h, lines, own } = setup();
    const a = await h.handle(4, { op: 'replace', owner: own(1), pinholes: [{ ...passive, rdrPort: 22 }] });
    expect(a).toEqual({ id: 4, ok: false, error: 'refused by the privileged process: pinhole 1: rdrPort below 1024 or not a port' });
    expect(fw.calls).toEqual([]);
    expect(lines).toEqual(['privsep: refused a request of the network process: pinhole 1: rdrPort below 1024 or not a port']);
  });

  it('no more sessions hold pinholes than -m; a clear makes room again', async () => {
    const { h, own } = setup(2);
    expect((await h.handle(1, { op: 'replace', owner: own(1), pinholes: [passive] })).ok).toBe(true);
    expect((await h.handle(2, { op: 'replace', owner: own(2), pinholes: [passive] })).ok).toBe(true);
    expect(await h.handle(3, { op: 'replace', owner: own(3), pinholes: [passive] })).toMatchObject({ ok: false, error: /2 sessions already hold pinholes/ });
    expect((await h.handle(4, { op: 'replace', owner: own(1), pinholes: [active] })).ok).toBe(true); // a holder may replace
    expect((await h.handle(5, { op: 'clear', owner: own(2) })).ok).toBe(true);
    expect((await h.handle(6, { op: 'replace', owner: own(3), pinholes: [passive] })).ok).toBe(true);
  });

  it('one session\'s requests are applied in the order they came, even when the firewall is slow', async () => {
    const { fw, h, own } = setup();
    fw.delayMs = 20;
    const done = await Promise.all([
      h.handle(1, { op: 'replace', owner: own(9), pinholes: [passive] }),
      h.handle(2, { op: 'clear', owner: own(9) }),
      h.handle(3, { op: 'replace', owner: own(9), pinholes: [active] }),
    ]);
    expect(done.map((d) => d.ok)).toEqual([true, true, true]);
    expect(fw.calls.map((c) => c.op)).toEqual(['replace', 'clear', 'replace']);
    expect(fw.live.get(`${fw.instance}.9`)).toEqual([active]);
  });

  it('the host\'s addresses are read again only for an address not seen before', () => {
    let reads = 0;
    const sets = [new Set(['198.51.100.1']), new Set(['198.51.100.1', '198.51.100.7'])];
    const isLocal = localCache(() => sets[Math.min(reads++, 1)]!);
    expect(isLocal('198.51.100.1')).toBe(true);
    expect(isLocal('127.0.0.5')).toBe(true);
    expect(reads).toBe(1);
    expect(isLocal('198.51.100.7')).toBe(true); // added since: one more read
    expect(reads).toBe(2);
    expect(isLocal('10.1.1.1')).toBe(false);
  });
});

describe('PrivsepFirewall: the network process\'s stub', () => {
  const stub = () => {
    const sent: ToParent[] = [];
    const fw = new PrivsepFirewall({ send: (m) => sent.push(m) });
    return { fw, sent };
  };

  it('init takes the instance id from the answer; replace and clear send the owner and pinholes', async () => {
    const { fw, sent } = stub();
    const init = fw.init();
    fw.answer({ id: 1, ok: true, instance: ID });
    await init;
    expect(fw.instance).toBe(ID);
    const r = fw.replace(owner, [passive]);
    expect(sent[1]).toEqual({ id: 2, op: 'replace', owner, pinholes: [passive] });
    fw.answer({ id: 2, ok: true });
    await r;
    const c = fw.clear(owner);
    expect(sent[2]).toEqual({ id: 3, op: 'clear', owner });
    fw.answer({ id: 3, ok: true });
    await c;
  });

  it('a taken key comes back as PinholeConflict (the session tries another port), anything else as FirewallError (425)', async () => {
    const { fw } = stub();
    const a = fw.replace(owner, [passive]);
    fw.answer({ id: 1, ok: false, error: 'pinhole taken', conflict: true });
    await expect(a).rejects.toBeInstanceOf(PinholeConflict);
    const b = fw.replace(owner, [passive]);
    fw.answer({ id: 2, ok: false, error: 'refused by the privileged process: rdrPort below 1024 or not a port' });
    await expect(b).rejects.toBeInstanceOf(FirewallError);
    await expect(b).rejects.toThrow(/refused by the privileged process/);
  });

  it('the privileged process gone: waiting and later requests fail, nothing hangs', async () => {
    const { fw } = stub();
    const a = fw.replace(owner, [passive]);
    fw.disconnected();
    await expect(a).rejects.toThrow(/privileged process is gone/);
    await expect(fw.clear(owner)).rejects.toThrow(/privileged process is gone/);
  });
});

describe('when the daemon splits', () => {
  const host = { platform: 'linux', uid: 65534, caps: 0x1100n, env: {}, setpriv: '/usr/bin/setpriv' };
  it.each<[string, Partial<typeof host>, string, unknown]>([
    ['as the user with CAP_SETPCAP: split, bounding set emptied', {}, 'nftables', { split: true, setpriv: '/usr/bin/setpriv', dropBounding: true }],
    ['as systemd runs it (CAP_NET_ADMIN only): split, bounding set kept', { caps: 0x1000n }, 'auto', { split: true, setpriv: '/usr/bin/setpriv', dropBounding: false }],
    ['as root: one process', { uid: 0 }, 'nftables', { split: false, why: 'running as root' }],
    ['pf: one process', {}, 'pf', { split: false, why: 'not wanted' }],
    ['OpenBSD: one process', { platform: 'openbsd' }, 'auto', { split: false, why: 'not wanted' }],
    ['FTP_PROXY_PRIVSEP=0: one process', { env: { FTP_PROXY_PRIVSEP: '0' } }, 'iptables', { split: false, why: 'not wanted' }],
    ['no setpriv: one process, and why', { setpriv: null as unknown as string }, 'nftables', { split: false, why: 'setpriv(1) not found (util-linux)' }],
  ])('%s', (_name, over, backend, want) => {
    expect(plan(backend, { ...host, ...over })).toEqual(want);
  });

  it('the network process starts with no capability in any set and no_new_privs', () => {
    expect(dropArgs(true)).toEqual(['--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--no-new-privs', '--']);
    expect(dropArgs(false)).not.toContain('--bounding-set=-all');
  });
});
