// The policy's FTPS keys (tls_*): values, the schema check with file:line: key: problem, the checks
// between keys, the certificate and key files (each failure names the file and the reason), and the TLS
// modes running: complete policies accepted by --check-config and start-up, the files reloaded (or kept)
// with the policy on SIGUSR1.
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { memoryLog } from '../../src/log.js';
import { freePort } from '../helpers/daemon-rig.js';
import { scriptedServer } from '../helpers/ftp-peers.js';
import { issues, policy } from '../helpers/policy-text.js';
import { checkTls, defaultTls, parseTlsKey, type TlsKey, type TlsPolicy } from '../../src/policy/tls.js';
import { createCa } from '../../src/tls/ca.js';
import { checkWholeConfig } from '../../src/validate.js';
import { subtle, x509 } from '../../src/tls/certs-x509.js';

describe('tls_* values', () => {
  it('defaults: no TLS on either leg, servers verified', () => {
    expect(policy('').tls).toEqual({ client: 'none', server: 'none', serverVerify: true, passthroughPortsByServer: new Map(), lines: {} });
  });

  it('none on both legs is accepted, and so are the keys a later mode will use', () => {
    const p = policy('tls_client none\ntls_server none\ntls_server_verify no\n');
    expect(p.tls).toMatchObject({ client: 'none', server: 'none', serverVerify: false, lines: { tls_client: 1, tls_server: 2, tls_server_verify: 3 } });
    const q = policy('tls_certificate "/etc/ftp-proxy/proxy.crt"\ntls_key "/etc/ftp-proxy/proxy.key"\ntls_ca_certificate "/etc/ftp-proxy/ca/ca.crt"\ntls_ca_key "/etc/ftp-proxy/ca/ca.key"\ntls_server_ca "/etc/ssl/lab.pem"\n');
    expect(q.tls).toMatchObject({
      certificate: '/etc/ftp-proxy/proxy.crt',
      key: '/etc/ftp-proxy/proxy.key',
      caCertificate: '/etc/ftp-proxy/ca/ca.crt',
      caKey: '/etc/ftp-proxy/ca/ca.key',
      serverCa: '/etc/ssl/lab.pem',
    });
  });

  // Each mode parses to its value (complete policies are checked below).
  it.each<[TlsKey, string, Partial<TlsPolicy>]>([
    ['tls_client', 'accept', { client: 'accept' }],
    ['tls_client', 'require', { client: 'require' }],
    ['tls_client', 'passthrough', { client: 'passthrough' }],
    ['tls_server', 'forward', { server: 'forward' }],
    ['tls_server', 'require', { server: 'require' }],
    ['tls_server_verify', 'yes', { serverVerify: true }],
    ['tls_passthrough_ports', '50000-50100', { passthroughPorts: { low: 50000, high: 50100, line: 7 } }],
    ['tls_passthrough_ports', '1024-1024', { passthroughPorts: { low: 1024, high: 1024, line: 7 } }],
  ])('%s %s', (key, value, want) => {
    const tls = defaultTls();
    const failed: string[] = [];
    parseTlsKey(key, value.split(' ').map((text) => ({ kind: 'word' as const, text })), 7, tls, (m) => failed.push(m));
    expect(failed).toEqual([]);
    expect(tls).toMatchObject({ ...want, lines: { [key]: 7 } });
  });

  it('tls_passthrough_ports per server address (IPv6 in one spelling) and for every server', () => {
    const tls = defaultTls();
    const failed: string[] = [];
    const line = (n: number, ...w: string[]): void => parseTlsKey('tls_passthrough_ports', w.map((text) => ({ kind: 'word' as const, text })), n, tls, (m) => failed.push(m));
    line(3, '50000-50100', '192.0.2.10');
    line(4, '40000-40999', '2001:DB8:0::21');
    line(5, '60000-60010');
    line(6, '30000-30010', '2001:db8::21');
    expect(failed).toEqual(['a range for 2001:db8::21 is already set on line 4']);
    expect(tls.passthroughPorts).toEqual({ low: 60000, high: 60010, line: 5 });
    expect([...tls.passthroughPortsByServer]).toEqual([
      ['192.0.2.10', { low: 50000, high: 50100, line: 3 }],
      ['2001:db8::21', { low: 40000, high: 40999, line: 4 }],
    ]);
    expect(tls.lines.tls_passthrough_ports).toBe(3);
  });
});

describe('tls_* schema check: file, line and key of every mistake', () => {
  it.each([
    ['tls_client maybe', ['test.policy:1: tls_client: expected none, accept, require or passthrough, not "maybe"']],
    ['tls_client', ['test.policy:1: tls_client: expected none, accept, require or passthrough']],
    ['tls_server passthrough', ['test.policy:1: tls_server: expected none, forward or require, not "passthrough"']],
    ['tls_server_verify perhaps', ['test.policy:1: tls_server_verify: expected yes or no, not "perhaps"']],
    ['tls_client none\ntls_client none', ['test.policy:2: tls_client: given twice (first on line 1)']],
    ['tls_certificate etc.crt\ntls_key "/k"', ['test.policy:1: tls_certificate: expected a file name in double quotes ("/etc/ftp-proxy/..."), not "etc.crt"']],
    ['tls_certificate /etc/\ntls_key "/k"', ['test.policy:1: tls_certificate: expected a file name in double quotes ("/etc/ftp-proxy/..."), not a regular expression']],
    ['tls_certificate /etc/ftp-proxy/proxy.crt\ntls_key "/k"', ['test.policy:1: tls_certificate: no space after a regular expression (quote file names: "/etc/ftp-proxy/...")', 'test.policy:2: tls_key: needs tls_certificate as well']],
    ['tls_certificate "etc/proxy.crt"\ntls_key "/k"', ['test.policy:1: tls_certificate: expected an absolute file name (the daemon does not run in the policy\'s directory), not "etc/proxy.crt"']],
    ['tls_certificate "/a" "/b"\ntls_key "/k"', ['test.policy:1: tls_certificate: expected a file name in double quotes ("/etc/ftp-proxy/...")']],
    ['tls_key "/k"', ['test.policy:1: tls_key: needs tls_certificate as well']],
    ['tls_certificate "/c"', ['test.policy:1: tls_certificate: needs tls_key as well']],
    ['tls_ca_certificate "/c"', ['test.policy:1: tls_ca_certificate: needs tls_ca_key as well']],
    ['\ntls_ca_key "/k"', ['test.policy:2: tls_ca_key: needs tls_ca_certificate as well']],
    ['tls_server_verify no\ntls_server_ca "/etc/ssl/lab.pem"', ['test.policy:2: tls_server_ca: is not used with tls_server_verify no']],
    ['tls_passthrough_ports 50000-50100', ['test.policy:1: tls_passthrough_ports: is only used with tls_client passthrough']],
    ['tls_passthrough_ports 80-90', ['test.policy:1: tls_passthrough_ports: expected LOW-HIGH [SERVER-ADDRESS] (the server\'s passive port range, 1024-65535), not "80-90"']],
    ['tls_passthrough_ports 50100-50000', ['test.policy:1: tls_passthrough_ports: expected LOW-HIGH [SERVER-ADDRESS] (the server\'s passive port range, 1024-65535), not "50100-50000"']],
    ['tls_passthrough_ports 50000-70000', ['test.policy:1: tls_passthrough_ports: expected LOW-HIGH [SERVER-ADDRESS] (the server\'s passive port range, 1024-65535), not "50000-70000"']],
    ['tls_passthrough_ports 50000', ['test.policy:1: tls_passthrough_ports: expected LOW-HIGH [SERVER-ADDRESS] (the server\'s passive port range, 1024-65535), not "50000"']],
    ['tls_passthrough_ports', ['test.policy:1: tls_passthrough_ports: expected LOW-HIGH [SERVER-ADDRESS] (the server\'s passive port range, 1024-65535)']],
    ['tls_passthrough_ports 50000-50100 ftp.example.org', ['test.policy:1: tls_passthrough_ports: expected a numeric server address after the range, not "ftp.example.org"']],
    [
      'tls_client passthrough\ntls_passthrough_ports 50000-50100\ntls_passthrough_ports 50000-50200',
      ['test.policy:3: tls_passthrough_ports: a range for every server is already set on line 2'],
    ],
  ])('%j', (text, want) => {
    const got = issues(text);
    expect(got.length).toBe(want.length);
    want.forEach((w, i) => expect(got[i]).toContain(w));
  });

  it('the checks between keys report, all at once, and nothing else (no mode is refused any more)', () => {
    expect(issues('tls_client accept')).toEqual([
      'test.policy:1: tls_client: accept needs a certificate for clients: tls_certificate and tls_key, or (forward mode) tls_ca_certificate and tls_ca_key',
    ]);
    expect(issues('tls_client require\ntls_server forward')).toEqual([
      'test.policy:1: tls_client: require needs a certificate for clients: tls_certificate and tls_key, or (forward mode) tls_ca_certificate and tls_ca_key',
    ]);
    expect(issues('tls_client passthrough\ntls_server forward')).toEqual([
      "test.policy:1: tls_client: passthrough needs tls_passthrough_ports LOW-HIGH (the server's passive port range)",
      'test.policy:2: tls_server: must be none with tls_client passthrough (the proxy does not take part in the TLS it passes through), not forward',
    ]);
    expect(issues('tls_client passthrough\ntls_passthrough_ports 50000-50100\ntls_server require')).toEqual([
      'test.policy:3: tls_server: must be none with tls_client passthrough (the proxy does not take part in the TLS it passes through), not require',
    ]);
  });

  const MINTED_NONE =
    "tls_ca_certificate: a minted certificate mirrors the server's, which tls_server none never sees: set tls_server forward or require, or give tls_certificate and tls_key";
  it.each([
    // accept/require with tls_server none (said or by default) and only a CA: nothing to mirror
    ['tls_client accept\ntls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"', [`test.policy:2: ${MINTED_NONE}`]],
    ['tls_client require\ntls_server none\ntls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"', [`test.policy:3: ${MINTED_NONE}`]],
  ])('only a CA with tls_server none: %j', (text, want) => {
    expect(issues(text)).toEqual(want);
  });

  it.each([
    ['tls_client accept\ntls_server forward\ntls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"'],
    ['tls_client require\ntls_server require\ntls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"'],
    // a configured certificate next to the CA: tls_server none presents it
    ['tls_client accept\ntls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"\ntls_certificate "/c"\ntls_key "/k"'],
  ])('a CA is fine where it has a server certificate to mirror, or a certificate beside it: %j', (text) => {
    expect(policy(text).tls.lines.tls_ca_certificate).toBeGreaterThan(0);
  });

  it('mistakes of tls_* and other keys come together, in line order', () => {
    expect(issues('tls_key "/k"\nprofile x\ntls_client sometimes').map((i) => i.split(': ').slice(0, 2).join(': '))).toEqual([
      'test.policy:1: tls_key',
      'test.policy:2: profile',
      'test.policy:3: tls_client',
    ]);
  });
});

describe('complete TLS policies are accepted (the modes run)', () => {
  const withCert = 'tls_certificate "/c"\ntls_key "/k"\n';
  const withCa = 'tls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"\n';
  it.each<[string, Partial<TlsPolicy>]>([
    [`${withCert}tls_client accept\n`, { client: 'accept', server: 'none' }],
    [`${withCert}tls_client require\n`, { client: 'require', server: 'none' }],
    [`${withCa}tls_client accept\ntls_server forward\n`, { client: 'accept', server: 'forward', caCertificate: '/ca.crt', caKey: '/ca.key' }],
    [`${withCa}tls_client require\ntls_server require\ntls_server_verify no\n`, { client: 'require', server: 'require', serverVerify: false }],
    [`${withCert}tls_client accept\ntls_server forward\ntls_server_ca "/etc/ssl/lab.pem"\n`, { client: 'accept', server: 'forward', serverCa: '/etc/ssl/lab.pem' }],
    // the server leg alone: no certificate for clients needed
    ['tls_server require\n', { client: 'none', server: 'require' }],
    ['tls_server forward\n', { client: 'none', server: 'forward' }],
    ['tls_client passthrough\ntls_passthrough_ports 50000-50100 192.0.2.10\n', { client: 'passthrough', server: 'none' }],
    ['tls_client passthrough\ntls_server none\ntls_passthrough_ports 50000-50100\n', { client: 'passthrough', server: 'none', passthroughPorts: { low: 50000, high: 50100, line: 3 } }],
  ])('%j', (text, want) => {
    expect(policy(text).tls).toMatchObject(want);
  });

  it('checkTls alone: nothing for a complete accept', () => {
    const tls = { ...defaultTls(), client: 'accept' as const, certificate: '/c', key: '/k', lines: { tls_client: 1, tls_certificate: 2, tls_key: 3 } };
    expect(checkTls(tls)).toEqual([]);
  });

  it('checkTls alone: the minted-certificate check is on the tls_ca_certificate line', () => {
    const tls = { ...defaultTls(), client: 'accept' as const, caCertificate: '/ca.crt', caKey: '/ca.key', lines: { tls_client: 1, tls_ca_certificate: 2, tls_ca_key: 3 } };
    expect(checkTls(tls)).toEqual([{ key: 'tls_ca_certificate', message: expect.stringContaining('tls_server none never sees') }]);
    expect(checkTls({ ...tls, server: 'forward' })).toEqual([]);
    expect(checkTls({ ...tls, client: 'none' })).toEqual([]);
  });
});

describe('certificate and key files: --check-config names the file and the reason', () => {
  let dir: string;
  const files: Record<string, string> = {};
  const read = (f: string): string => {
    if (!(f in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return files[f]!;
  };

  /** A certificate (self-signed, or a CA) and its key, as PEM. */
  async function pair(cn: string, o: { ca?: boolean; notBefore?: Date; notAfter?: Date } = {}): Promise<{ crt: string; key: string }> {
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
    const keys = await subtle.generateKey(alg, true, ['sign', 'verify']);
    const now = Date.now();
    const c = await x509.X509CertificateGenerator.createSelfSigned({
      name: `CN=${cn}`,
      keys,
      signingAlgorithm: alg,
      notBefore: o.notBefore ?? new Date(now - 86400_000 * 10),
      notAfter: o.notAfter ?? new Date(now + 86400_000 * 10),
      extensions: o.ca ? [new x509.BasicConstraintsExtension(true, 0, true)] : [],
    });
    const der = Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey));
    return { crt: c.toString('pem'), key: `-----BEGIN PRIVATE KEY-----\n${der.toString('base64')}\n-----END PRIVATE KEY-----\n` };
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftp-proxy-tlspolicy-'));
    const ca = await createCa(join(dir, 'ca'));
    files['/ca.crt'] = readFileSync(ca.certFile, 'utf8');
    files['/ca.key'] = readFileSync(ca.keyFile, 'utf8');
    const a = await pair('ftp.example.org');
    const b = await pair('other.example.org');
    const old = await pair('old.example.org', { notAfter: new Date(Date.now() - 86400_000) });
    const young = await pair('young.example.org', { notBefore: new Date(Date.now() + 86400_000), notAfter: new Date(Date.now() + 2 * 86400_000) });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    Object.assign(files, {
      '/a.crt': a.crt,
      '/a.key': a.key,
      '/b.crt': b.crt,
      '/b.key': b.key,
      '/old.crt': old.crt,
      '/young.crt': young.crt,
      '/young.key': young.key,
      '/rsa1.key': rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
      '/sec1.key': ec.privateKey.export({ type: 'sec1', format: 'pem' }) as string,
      '/old.key': old.key,
      '/garbage.crt': '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n',
      '/empty': '',
      '/enc.key': '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n',
      '/ed.key': generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      '/bundle.pem': files['/ca.crt']! + a.crt,
      'tls.policy': '',
    });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const check = async (text: string): Promise<{ exit: number; out: string }> => {
    files['tls.policy'] = text;
    const c = parseCommandLine(['-f', 'tls.policy']);
    if (!('config' in c)) throw new Error(c.stderr);
    const r = await checkWholeConfig(c.config, { readFile: read });
    return { exit: r.exit, out: r.stdout ?? r.stderr ?? '' };
  };

  it('good files pass with tls_client none too', async () => {
    const r = await check('tls_certificate "/a.crt"\ntls_key "/a.key"\ntls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"\ntls_server_ca "/bundle.pem"\n');
    expect(r).toMatchObject({ exit: 0, out: expect.stringMatching(/tls\.policy: OK \(.*, tls_client none, tls_server none, TLS files loaded: certificate and key, CA and key, server CAs\)\n$/) });
  });

  it.each([
    ['tls_client accept\ntls_certificate "/a.crt"\ntls_key "/a.key"\n', 'tls_client accept, tls_server none, TLS files loaded: certificate and key'],
    ['tls_client require\ntls_server forward\ntls_ca_certificate "/ca.crt"\ntls_ca_key "/ca.key"\ntls_server_ca "/bundle.pem"\n', 'tls_client require, tls_server forward, TLS files loaded: CA and key, server CAs'],
    // (without a file the OK line does not name the modes: see the report of helper F)
    ['tls_server require\n', null],
    ['tls_client passthrough\ntls_passthrough_ports 50000-50100\n', null],
  ])('--check-config accepts a complete TLS policy: %j', async (text, want) => {
    const r = await check(text);
    expect(r.exit).toBe(0);
    expect(r.out).toMatch(/^ftp-proxy: flags OK; tls\.policy: OK \(/);
    if (want) expect(r.out).toContain(want);
  });

  // Fixed in 2a69c68: --check-config read key files without the mode check start-up makes, so it passed
  // a key every user may read that start-up then refused (--check-config must fail wherever start would).
  it('--check-config refuses a key file open to every user, as start-up does', async () => {
    writeFileSync(join(dir, 'open.crt'), files['/a.crt']!);
    writeFileSync(join(dir, 'open.key'), files['/a.key']!, { mode: 0o644 });
    chmodSync(join(dir, 'open.key'), 0o644);
    const file = join(dir, 'open.policy');
    writeFileSync(file, `tls_client accept\ntls_certificate "${dir}/open.crt"\ntls_key "${dir}/open.key"\n`);
    const c = parseCommandLine(['-f', file]);
    if (!('config' in c)) throw new Error(c.stderr);
    const r = await checkWholeConfig(c.config);
    expect(r.exit).toBe(1);
    expect(r.stderr).toContain(`${dir}/open.key: the private key is open to every user (mode 0644)`);
  });

  it.each([
    ['tls_certificate "/missing.crt"\ntls_key "/a.key"', 'tls.policy:1: tls_certificate: /missing.crt: cannot read it (ENOENT)'],
    ['tls_certificate "/a.crt"\ntls_key "/missing.key"', 'tls.policy:2: tls_key: /missing.key: cannot read it (ENOENT)'],
    ['tls_certificate "/a.key"\ntls_key "/a.key"', 'tls.policy:1: tls_certificate: /a.key: no PEM certificate (-----BEGIN CERTIFICATE-----) in it (it holds a private key: is it the key file?)'],
    ['tls_certificate "/a.crt"\ntls_key "/a.crt"', 'tls.policy:2: tls_key: /a.crt: no PEM private key (-----BEGIN PRIVATE KEY-----) in it (it holds a certificate: is it the certificate file?)'],
    ['tls_certificate "/garbage.crt"\ntls_key "/a.key"', 'tls.policy:1: tls_certificate: /garbage.crt: certificate 1 is not a valid X.509 certificate'],
    ['tls_certificate "/empty"\ntls_key "/a.key"', 'tls.policy:1: tls_certificate: /empty: no PEM certificate (-----BEGIN CERTIFICATE-----) in it'],
    ['tls_certificate "/a.crt"\ntls_key "/b.key"', 'tls.policy:2: tls_key: /b.key: the private key does not belong to the certificate in /a.crt'],
    ['tls_certificate "/old.crt"\ntls_key "/old.key"', 'tls.policy:1: tls_certificate: /old.crt: the certificate expired on'],
    ['tls_certificate "/a.crt"\ntls_key "/enc.key"', 'tls.policy:2: tls_key: /enc.key: the private key is encrypted'],
    ['tls_ca_certificate "/a.crt"\ntls_ca_key "/a.key"', 'tls.policy:1: tls_ca_certificate: /a.crt: not a CA certificate (basicConstraints CA:TRUE is missing): CN=ftp.example.org'],
    ['tls_ca_certificate "/ca.crt"\ntls_ca_key "/a.key"', 'tls.policy:2: tls_ca_key: /a.key: the private key does not belong to the certificate in /ca.crt'],
    ['tls_ca_certificate "/ca.crt"\ntls_ca_key "/ed.key"', 'tls.policy:2: tls_ca_key: /ed.key: unsupported key type ed25519 for a CA key (use EC P-256, P-384, P-521 or RSA)'],
    ['tls_server_ca "/empty"', 'tls.policy:1: tls_server_ca: /empty: no PEM certificate'],
    ['tls_key "/missing.key"', 'tls.policy:1: tls_key: /missing.key: cannot read it (ENOENT)'],
    ['tls_certificate "/young.crt"\ntls_key "/young.key"', 'tls.policy:1: tls_certificate: /young.crt: the certificate is not valid before'],
    ['tls_certificate "/a.crt"\ntls_key "/rsa1.key"', 'tls.policy:2: tls_key: /rsa1.key: the private key does not belong to the certificate in /a.crt'],
    ['tls_ca_certificate "/ca.crt"\ntls_ca_key "/sec1.key"', 'tls.policy:2: tls_ca_key: /sec1.key: the private key does not belong to the certificate in /ca.crt'],
  ])('%j', async (text, want) => {
    const r = await check(text);
    expect(r.exit).toBe(1);
    expect(r.out).toContain(want);
    expect(r.out).toMatch(/^ftp-proxy: tls\.policy:\d+: [^]*\ntls\.policy: \d error\(s\), not started\n$/);
  });

  it('file problems come with the other mistakes, in line order', async () => {
    const r = await check('tls_client accept\ntls_certificate "/missing.crt"\ntls_key "/a.key"\nprofile x\n');
    expect(r.exit).toBe(1);
    expect(r.out.split('\n').map((l) => l.split(': ').slice(0, 2).join(': '))).toEqual([
      'ftp-proxy: tls.policy:2',
      'tls.policy:4: profile',
      'tls.policy: 2 error(s), not started',
      '',
    ]);
    expect(r.out).toContain('tls.policy:2: tls_certificate: /missing.crt: cannot read it (ENOENT)');
  });

  /** A daemon on loopback (-R to a scripted server) with the policy in `file`. */
  async function daemonWith(file: string): Promise<{ daemon: Daemon; port: number; lines: string[]; received: string[]; close: () => Promise<void> }> {
    const server = await scriptedServer({}, '127.0.0.3');
    const port = await freePort('127.0.0.2');
    const out = parseCommandLine(['-d', '-D', '7', '-b', '127.0.0.2', '-p', String(port), '-R', '127.0.0.3', '-P', String(server.port), '-f', file]);
    if (!('config' in out)) throw new Error(out.stderr);
    const { log, lines } = memoryLog(7);
    const daemon = new Daemon({ config: out.config, log, firewall: new FakeFirewall(), unprivileged: true });
    return {
      daemon,
      port,
      lines,
      received: server.received,
      close: async () => {
        await daemon.stop();
        await server.close();
      },
    };
  }

  /** Greeting, `AUTH TLS`: the reply; on a 234, the subject CN of the certificate the proxy presents. */
  async function authTls(port: number): Promise<{ reply: string; cn?: string }> {
    const s = connect({ port, host: '127.0.0.2', localAddress: '127.0.0.4' });
    s.on('error', () => undefined);
    try {
      await once(s, 'connect');
      let buf = '';
      const line = async (): Promise<string> => {
        while (!buf.includes('\n')) {
          const [d] = (await Promise.race([once(s, 'data'), once(s, 'close').then(() => [Buffer.from('(closed)\n')])])) as [Buffer];
          buf += d.toString('latin1');
        }
        const l = buf.slice(0, buf.indexOf('\n') + 1);
        buf = buf.slice(l.length);
        return l;
      };
      expect(await line()).toMatch(/^220 /);
      s.write('AUTH TLS\r\n');
      const reply = await line();
      if (!reply.startsWith('234')) return { reply };
      const t = tlsConnect({ socket: s, rejectUnauthorized: false, servername: 'ftp.example.org' });
      t.on('error', () => undefined);
      await once(t, 'secureConnect');
      const cn = t.getPeerCertificate().subject.CN;
      t.destroy();
      return { reply, cn: Array.isArray(cn) ? cn[0] : cn };
    } finally {
      s.destroy();
    }
  }

  it('the daemon starts with a TLS mode and good files, and presents the configured certificate', async () => {
    writeFileSync(join(dir, 'a.crt'), files['/a.crt']!);
    writeFileSync(join(dir, 'a.key'), files['/a.key']!, { mode: 0o600 });
    const file = join(dir, 'start-good.policy');
    writeFileSync(file, `tls_client accept\ntls_certificate "${dir}/a.crt"\ntls_key "${dir}/a.key"\n`);
    const d = await daemonWith(file);
    try {
      await d.daemon.start(); // refused before the modes ran ("not implemented yet in this version")
      expect(d.lines.join('\n')).toContain('tls_client accept, tls_server none');
      expect(await authTls(d.port)).toEqual({ reply: '234 AUTH TLS successful, start the TLS handshake\r\n', cn: 'ftp.example.org' });
    } finally {
      await d.close();
    }
  });

  it('a session: "AUTH TLS" and "USER x" in one write end the session, and the server never sees USER', async () => {
    writeFileSync(join(dir, 'a.crt'), files['/a.crt']!);
    writeFileSync(join(dir, 'a.key'), files['/a.key']!, { mode: 0o600 });
    const file = join(dir, 'inject.policy');
    writeFileSync(file, `tls_client accept\ntls_certificate "${dir}/a.crt"\ntls_key "${dir}/a.key"\n`);
    const d = await daemonWith(file);
    try {
      await d.daemon.start();
      const s = connect({ port: d.port, host: '127.0.0.2', localAddress: '127.0.0.4' });
      s.on('error', () => undefined);
      let got = '';
      s.on('data', (b: Buffer) => (got += b.toString('latin1')));
      await once(s, 'connect');
      for (let i = 0; i < 200 && !got.includes('\n'); i++) await new Promise((r) => setTimeout(r, 10));
      expect(got).toMatch(/^220 /);
      s.write('AUTH TLS\r\nUSER x\r\n');
      await Promise.race([once(s, 'close'), new Promise((_, no) => setTimeout(() => no(new Error(`still open; got ${JSON.stringify(got)}`)), 5000))]);
      expect(d.received.some((l) => /^USER/i.test(l))).toBe(false);
      expect(d.lines.join('\n')).toMatch(/after AUTH before the TLS handshake: refused/);
    } finally {
      await d.close();
    }
  });

  it('the daemon refuses to start with bad files, naming the file and the reason', async () => {
    writeFileSync(join(dir, 'a.key'), files['/a.key']!, { mode: 0o600 });
    const file = join(dir, 'start-bad.policy');
    writeFileSync(file, `tls_client accept\ntls_certificate "${dir}/missing.crt"\ntls_key "${dir}/a.key"\n`);
    const d = await daemonWith(file);
    try {
      await expect(d.daemon.start()).rejects.toThrow(`${file}:2: tls_certificate: ${dir}/missing.crt: cannot read it (ENOENT)`);
    } finally {
      await d.close();
    }
  });

  it('SIGUSR1 with bad files keeps the previous policy and its certificate; good files bring both', async () => {
    for (const n of ['a', 'b'] as const) {
      writeFileSync(join(dir, `${n}.crt`), n === 'a' ? files['/a.crt']! : files['/b.crt']!);
      writeFileSync(join(dir, `${n}.key`), files[`/${n}.key`]!, { mode: 0o600 });
    }
    const file = join(dir, 'reload.policy');
    const accept = (crt: string, key: string): string => `tls_client accept\ntls_certificate "${dir}/${crt}"\ntls_key "${dir}/${key}"\n`;
    writeFileSync(file, accept('a.crt', 'a.key'));
    const d = await daemonWith(file);
    try {
      await d.daemon.start();
      expect((await authTls(d.port)).cn).toBe('ftp.example.org');
      // b's certificate with a key that is not there: nothing of it is taken
      writeFileSync(file, accept('b.crt', 'nope.key'));
      expect(d.daemon.reloadPolicy()).toBe(false);
      const text = d.lines.join('\n');
      expect(text).toContain(`${file}:3: tls_key: ${dir}/nope.key: cannot read it (ENOENT)`);
      expect(text).toContain('not reloaded, the previous one stays in force');
      expect((await authTls(d.port)).cn).toBe('ftp.example.org');
      // b's certificate with a's key: does not pair, refused as a whole
      writeFileSync(file, accept('b.crt', 'a.key'));
      expect(d.daemon.reloadPolicy()).toBe(false);
      expect(d.lines.join('\n')).toContain(`${file}:3: tls_key: ${dir}/a.key: the private key does not belong to the certificate in ${dir}/b.crt`);
      expect((await authTls(d.port)).cn).toBe('ftp.example.org');
      // b's own key, but open to every user: the policy parses, its material does not load (start-up's
      // check of the key's mode), so neither is taken
      writeFileSync(join(dir, 'b-open.key'), files['/b.key']!, { mode: 0o644 });
      chmodSync(join(dir, 'b-open.key'), 0o644);
      // (the rule makes the policy's taking visible: AUTH would get its 550)
      writeFileSync(file, `${accept('b.crt', 'b-open.key')}command AUTH reject 550 "policy b"\n`);
      expect(d.daemon.reloadPolicy()).toBe(false);
      expect(d.lines.join('\n')).toContain(`${dir}/b-open.key: the private key is open to every user (mode 0644)`);
      expect((await authTls(d.port)).cn).toBe('ftp.example.org');
      // turning TLS off with a mistake beside it: still the previous policy (AUTH answered by the proxy)
      writeFileSync(file, 'tls_client none\nprofile x\n');
      expect(d.daemon.reloadPolicy()).toBe(false);
      expect((await authTls(d.port)).reply).toMatch(/^234 /);
      writeFileSync(file, accept('b.crt', 'b.key'));
      expect(d.daemon.reloadPolicy()).toBe(true);
      expect((await authTls(d.port)).cn).toBe('other.example.org');
      writeFileSync(file, 'tls_client none\n');
      expect(d.daemon.reloadPolicy()).toBe(true);
      expect((await authTls(d.port)).reply).toBe('504 AUTH not supported through ftp-proxy, use plain FTP\r\n');
    } finally {
      await d.close();
    }
  });
});
