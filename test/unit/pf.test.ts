// The pf backend without pf: the exact rule text for every shape of spec section 3 (golden files, each
// rule checked against pf.conf grammar), and the session lifecycle through a fake pfctl on PATH that
// records its arguments and input.
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { activePinhole, passivePinhole, passthroughPinhole, PinholeConflict, type RuleOptions, type SessionEnds } from '../../src/firewall/backend.js';
import { PfBackend, pfRules } from '../../src/firewall/pf.js';
import { readdirSync } from 'node:fs';
import { checkPfConf, checkPfRule } from '../helpers/pf-grammar.js';
import { fixedInstance } from '../helpers/instance.js';

// Spec section 3's example values: C=192.168.1.10, OS=S=198.51.100.21, P=203.0.113.5.
const fwd: SessionEnds = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '203.0.113.5' };
// Reverse (-R 10.0.0.21): internet client 192.0.2.50 dialled 203.0.113.5; P = 10.0.0.1.
const rev: SessionEnds = { family: 4, client: '192.0.2.50', originalServer: '203.0.113.5', server: '10.0.0.21', proxy: '10.0.0.1' };
const v6: SessionEnds = { family: 6, client: '2001:db8::10', originalServer: '2001:db8:ffff::21', server: '2001:db8:ffff::21', proxy: '2001:db8::1' };
const plain: RuleOptions = { log: 0, timeout: 30 };

const SHAPES: [string, string[]][] = [
  ['passive', pfRules(passivePinhole(fwd, 50000, 61000), plain)],
  ['active', pfRules(activePinhole(fwd, 40123, 55555, false), plain)],
  ['active-r-port20', pfRules(activePinhole(fwd, 40123, 55555, true), plain)],
  ['reverse-passive', pfRules(passivePinhole(rev, 50000, 61000), plain)],
  ['reverse-active', pfRules(activePinhole(rev, 40123, 55555, false), plain)],
  ['ipv6-epsv', pfRules(passivePinhole(v6, 50000, 61000), plain)],
  ['ipv6-eprt', pfRules(activePinhole(v6, 40123, 55555, false), plain)],
  ['log-v', pfRules(passivePinhole(fwd, 50000, 61000), { log: 1, timeout: 30 })],
  ['log-vv', pfRules(passivePinhole(fwd, 50000, 61000), { log: 2, timeout: 30 })],
  ['queue-q', pfRules(passivePinhole(fwd, 50000, 61000), { log: 0, queue: 'ftpq', timeout: 30 })],
  ['tag-T', pfRules(passivePinhole(fwd, 50000, 61000), { log: 0, tag: 'FTPDATA', timeout: 30 })],
  ['rdomain-passive', pfRules(passivePinhole(fwd, 50000, 61000), plain, { client: 1, proxy: 2 })],
  ['rdomain-active', pfRules(activePinhole(fwd, 40123, 55555, false), plain, { client: 1, proxy: 2 })],
  // tls_client passthrough: the server's passive range for the session
  ['range', pfRules(passthroughPinhole(fwd, 50000, 50100), plain)],
  ['range-reverse', pfRules(passthroughPinhole(rev, 50000, 50100), plain)],
  ['range-ipv6', pfRules(passthroughPinhole(v6, 50000, 50100), plain)],
  ['range-tag-T-log', pfRules(passthroughPinhole(fwd, 50000, 50100), { log: 1, tag: 'FTPDATA', timeout: 30 })],
  ['range-rdomain', pfRules(passthroughPinhole(fwd, 50000, 50100), plain, { client: 1, proxy: 2 })],
];

const golden = (name: string, actual: string): void => {
  const path = new URL(`../golden/pf/${name}.conf`, import.meta.url);
  if (process.env.UPDATE_GOLDEN) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, 'utf8'));
};

describe('pf rule shapes', () => {
  it.each(SHAPES)('%s matches its golden file', (name, rules) => golden(name, rules.join('\n') + '\n'));

  it.each(SHAPES.flatMap(([name, rules]) => rules.map((r): [string, string] => [name, r])))('%s: %s parses as pf.conf', (_n, rule) => {
    expect(checkPfRule(rule)).toEqual({ ok: true });
  });

  it('are the rules spec section 3.1 and 3.2 show', () => {
    expect(SHAPES[0]![1]).toEqual([
      'pass in quick on rdomain 0 inet proto tcp from 192.168.1.10 to 198.51.100.21 port = 61000 flags S/SA keep state (max 1) rtable 0 rdr-to 198.51.100.21 port 50000',
      'pass out quick on rdomain 0 inet proto tcp from 192.168.1.10 to 198.51.100.21 port = 50000 flags S/SA keep state (max 1) nat-to 203.0.113.5',
    ]);
    expect(SHAPES[1]![1]).toEqual([
      'pass in quick on rdomain 0 inet proto tcp from 198.51.100.21 to 203.0.113.5 port = 55555 flags S/SA keep state (max 1) rtable 0 rdr-to 192.168.1.10 port 40123',
      'pass out quick on rdomain 0 inet proto tcp from 198.51.100.21 to 192.168.1.10 port = 40123 flags S/SA keep state (max 1) nat-to 198.51.100.21',
    ]);
    expect(SHAPES[2]![1][1]).toMatch(/nat-to 198\.51\.100\.21 port 20$/);
  });

  it('reverse mode tells the client OS and sends it to the internal server (3.3)', () => {
    const [rdr, nat] = SHAPES[3]![1];
    expect(rdr).toContain('from 192.0.2.50 to 203.0.113.5 port = 61000');
    expect(rdr).toContain('rdr-to 10.0.0.21 port 50000');
    expect(nat).toContain('from 192.0.2.50 to 10.0.0.21 port = 50000');
    expect(nat).toMatch(/nat-to 10\.0\.0\.1$/);
  });

  it('modifiers: log, log (all), set queue, and -T as match+tag without quick or keep state (3.5)', () => {
    expect(SHAPES[7]![1][0]).toMatch(/^pass in log quick on rdomain 0 /);
    expect(SHAPES[8]![1][0]).toMatch(/^pass in log \(all\) quick on rdomain 0 /);
    expect(SHAPES[9]![1][0]).toContain('flags S/SA set queue ftpq keep state (max 1)');
    for (const r of SHAPES[10]![1]) {
      expect(r).toMatch(/^match (in|out) on rdomain 0 /);
      expect(r).toContain('flags S/SA tag FTPDATA');
      expect(r).not.toMatch(/quick|keep state/);
    }
  });

  it('rdomains: passive rdr on the client rdomain with the proxy rtable; active the other way (3.1, 3.2)', () => {
    expect(SHAPES[11]![1][0]).toMatch(/on rdomain 1 .* rtable 2 rdr-to/);
    expect(SHAPES[11]![1][1]).toMatch(/on rdomain 2 /);
    expect(SHAPES[12]![1][0]).toMatch(/on rdomain 2 .* rtable 1 rdr-to/);
    expect(SHAPES[12]![1][1]).toMatch(/on rdomain 1 /);
  });

  it('takes the rdomains the session read from its sockets (OpenBSD) when the pinhole carries them', () => {
    const p = { ...passivePinhole(fwd, 50000, 61000), rdomains: { client: 3, proxy: 4 } };
    expect(pfRules(p, plain)).toEqual(pfRules(passivePinhole(fwd, 50000, 61000), plain, { client: 3, proxy: 4 }));
    expect(pfRules(p, plain)[0]).toMatch(/on rdomain 3 .* rtable 4 rdr-to/);
  });

  it('a range pinhole: port LOW:HIGH both ways, rdr-to without a port (kept), keep state without (max 1)', () => {
    const [rdr, nat] = pfRules(passthroughPinhole(fwd, 50000, 50100), plain);
    expect(rdr).toBe('pass in quick on rdomain 0 inet proto tcp from 192.168.1.10 to 198.51.100.21 port 50000:50100 flags S/SA keep state rtable 0 rdr-to 198.51.100.21');
    expect(nat).toBe('pass out quick on rdomain 0 inet proto tcp from 192.168.1.10 to 198.51.100.21 port 50000:50100 flags S/SA keep state nat-to 203.0.113.5');
    // reverse: the public address's range to the internal server, from the proxy's inside address
    const [rr, rn] = pfRules(passthroughPinhole(rev, 50000, 50100), plain);
    expect(rr).toMatch(/from 192\.0\.2\.50 to 203\.0\.113\.5 port 50000:50100 .* rdr-to 10\.0\.0\.21$/);
    expect(rn).toMatch(/from 192\.0\.2\.50 to 10\.0\.0\.21 port 50000:50100 .* nat-to 10\.0\.0\.1$/);
    // the client's rdomain in, the proxy's out, as passive
    expect(pfRules(passthroughPinhole(fwd, 50000, 50100), plain, { client: 1, proxy: 2 })[0]).toMatch(/on rdomain 1 .* rtable 2 rdr-to/);
  });

  it.each([
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port 50100:50000', /to port/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port 0:10', /to port/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port 50000:70000', /to port/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port = 50000:50100', /to port/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port 50000: 50100', /to port/],
    ['match in on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port = 1 flags S/SA keep state (max 1)', /only for pass rules/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 2001:db8::1 port = 1', /to address/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port = 70000', /to port/],
    ['pass out quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 port = 1 rdr-to 1.1.1.1 port 2', /rdr-to on a rule/],
    ['pass in quick inet proto udp from 1.2.3.4 to 5.6.7.8', /proto tcp/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 frobnicate', /unknown option/],
    ['pass in quick on rdomain 0 inet proto tcp from 1.2.3.4 to 5.6.7.8 flags S/SA flags S/SA', /twice/],
  ])('the grammar check refuses %s', (rule, why) => {
    const r = checkPfRule(rule);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(why);
  });
});

describe('pf-examples/', () => {
  const dir = new URL('../../pf-examples/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.conf'));

  it('has a forward and a reverse example', () => {
    expect(files.sort()).toEqual(['forward.conf', 'reverse.conf']);
  });

  it.each(files)('%s parses as pf.conf and holds the anchor and a divert-to to the proxy', (file) => {
    const text = readFileSync(new URL(file, dir), 'utf8');
    expect(checkPfConf(text)).toEqual([]);
    expect(text).toMatch(/^anchor "ftp-proxy\/\*"$/m);
    expect(text).toMatch(/divert-to 127\.0\.0\.1 port 8021$/m);
    expect(text).toMatch(/^# When to use: /m);
  });

  it('the file check finds mistakes (an undefined macro, a bad option)', () => {
    expect(checkPfConf('pass in on $nope proto tcp to port ftp\n')[0]?.error).toMatch(/macro \$nope/);
    expect(checkPfConf('x = "em0"\npass in on $x proto tcp to port ftp divert-to 127.0.0.1\n')[0]).toMatchObject({ line: 2 });
  });
});

describe('pf session lifecycle through a fake pfctl', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftpp-pfctl-'));
  const log = join(dir, 'calls.jsonl');
  const oldPath = process.env.PATH;
  const calls = (): { args: string[]; input: string }[] =>
    readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { args: string[]; input: string });

  beforeAll(() => {
    const fake = fileURLToPath(new URL('../helpers/fake-pfctl.mjs', import.meta.url));
    chmodSync(fake, 0o755);
    symlinkSync(fake, join(dir, 'pfctl'));
    process.env.PATH = `${dir}:${oldPath}`;
    process.env.FAKE_PFCTL_LOG = log;
    process.env.FAKE_PFCTL_DIR = dir;
  });
  afterAll(() => {
    process.env.PATH = oldPath;
    delete process.env.FAKE_PFCTL_LOG;
    delete process.env.FAKE_PFCTL_DIR;
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    writeFileSync(log, '');
    for (const f of ['info', 'rules', 'anchors', 'fail']) rmSync(join(dir, f), { force: true });
  });

  const owner = { instance: '4a3b2c1d', session: 7 };
  const backend = (warn: string[] = [], alive: (id: string) => boolean = () => true) =>
    new PfBackend({ rules: plain, instance: fixedInstance(), isAlive: async (id) => alive(id), warn: (m) => warn.push(m) });

  it('replace loads the anchor with exactly the two rules; the next negotiation replaces them; the end loads it empty', async () => {
    const b = backend();
    const p1 = passivePinhole(fwd, 50000, 61000);
    const p2 = activePinhole(fwd, 40123, 55555, false);
    await b.replace(owner, [p1]);
    await b.replace(owner, [p2]);
    await b.clear(owner);
    await b.clear(owner);
    expect(calls()).toEqual([
      { args: ['-a', 'ftp-proxy/4a3b2c1d.7', '-f', '-'], input: pfRules(p1, plain).join('\n') + '\n' },
      { args: ['-a', 'ftp-proxy/4a3b2c1d.7', '-f', '-'], input: pfRules(p2, plain).join('\n') + '\n' },
      { args: ['-a', 'ftp-proxy/4a3b2c1d.7', '-f', '-'], input: '' },
    ]);
  });

  it('init checks pf is enabled and the anchor is in pf.conf, then empties the anchors of instances proven dead', async () => {
    writeFileSync(join(dir, 'anchors'), '  ftp-proxy/0000000a.1\n  ftp-proxy/0000000b.3\n  ftp-proxy/4a3b2c1d.9\n  ftp-proxy/0000000c.4\n  ftp-proxy/junk\n');
    const warn: string[] = [];
    await backend(warn, (id) => id === '0000000b').init();
    // our own id's anchor is never swept (it is live: ours)
    expect(calls().map((c) => c.args.join(' '))).toEqual([
      '-s info',
      '-s rules',
      '-a ftp-proxy -s Anchors',
      '-a ftp-proxy/0000000a.1 -f -',
      '-a ftp-proxy/0000000c.4 -f -',
    ]);
    expect(calls().slice(3).every((c) => c.input === '')).toBe(true);
    expect(warn).toEqual(['pf: emptied 2 stale anchor(s) left by dead instances']);
  });

  it('init fails with OpenBSD\'s "pf is disabled" and warns when pf.conf lacks the anchor', async () => {
    writeFileSync(join(dir, 'info'), 'Status: Disabled for 0 days\n');
    await expect(backend().init()).rejects.toThrow(/^pf is disabled$/);
    writeFileSync(join(dir, 'info'), 'Status: Enabled for 1 days\n');
    writeFileSync(join(dir, 'rules'), 'pass all\n');
    const warn: string[] = [];
    await backend(warn).init();
    expect(warn[0]).toMatch(/no anchor "ftp-proxy\/\*"/);
  });

  it('a pfctl failure reaches the caller with pfctl\'s message', async () => {
    writeFileSync(join(dir, 'fail'), 'ftp-proxy/4a3b2c1d');
    await expect(backend().replace(owner, [passivePinhole(fwd, 50000, 61000)])).rejects.toThrow(
      /pfctl -a ftp-proxy\/4a3b2c1d\.7 -f -: pfctl: DIOCADDRULE: Operation not permitted/,
    );
  });

  it('a proxy port drawn by two sessions of one client is refused (PinholeConflict), and free again after clear', async () => {
    const b = backend();
    await b.replace({ instance: '4a3b2c1d', session: 1 }, [passivePinhole(fwd, 50000, 61000)]);
    // pf would load both anchors' identical rdr rules, and the first would take the second's connection
    await expect(b.replace({ instance: '4a3b2c1d', session: 2 }, [passivePinhole(fwd, 50000, 61000)])).rejects.toBeInstanceOf(PinholeConflict);
    await b.replace({ instance: '4a3b2c1d', session: 2 }, [passivePinhole(fwd, 50000, 61001)]);
    await b.replace({ instance: '4a3b2c1d', session: 1 }, [passivePinhole(fwd, 50000, 61000)]); // its own key again: fine
    await b.clear({ instance: '4a3b2c1d', session: 1 });
    await b.replace({ instance: '4a3b2c1d', session: 3 }, [passivePinhole(fwd, 50000, 61000)]);
  });

  it('a range pinhole loads as two rules; two sessions of one client may hold the same range (each its own anchor)', async () => {
    const b = backend();
    const r = passthroughPinhole(fwd, 50000, 50100);
    await b.replace({ instance: '4a3b2c1d', session: 1 }, [r]);
    await b.replace({ instance: '4a3b2c1d', session: 2 }, [r]);
    await b.clear({ instance: '4a3b2c1d', session: 1 });
    expect(calls()).toEqual([
      { args: ['-a', 'ftp-proxy/4a3b2c1d.1', '-f', '-'], input: pfRules(r, plain).join('\n') + '\n' },
      { args: ['-a', 'ftp-proxy/4a3b2c1d.2', '-f', '-'], input: pfRules(r, plain).join('\n') + '\n' },
      { args: ['-a', 'ftp-proxy/4a3b2c1d.1', '-f', '-'], input: '' },
    ]);
    expect(calls()[0]!.input).toMatch(/port 50000:50100 .*rdr-to 198\.51\.100\.21\n/);
  });

  it('close empties every anchor it still holds', async () => {
    const b = backend();
    await b.replace({ instance: '4a3b2c1d', session: 1 }, [passivePinhole(fwd, 50000, 61000)]);
    await b.replace({ instance: '4a3b2c1d', session: 2 }, [passivePinhole(fwd, 50001, 61001)]);
    writeFileSync(log, '');
    await b.close();
    expect(calls()).toEqual([
      { args: ['-a', 'ftp-proxy/4a3b2c1d.1', '-f', '-'], input: '' },
      { args: ['-a', 'ftp-proxy/4a3b2c1d.2', '-f', '-'], input: '' },
    ]);
  });
});
