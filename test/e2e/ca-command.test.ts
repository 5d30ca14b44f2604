// The built command: `ftp-proxy ca create DIR` (files, modes, refusal to overwrite, what it prints), its
// CA accepted by --check-config as tls_ca_certificate/tls_ca_key, and a TLS mode refused by
// --check-config and at start-up (it fails on the policy, before the firewall is touched). And the
// certificates minted from such a CA as the lab's clients will check them: curl (OpenSSL), lftp (GnuTLS)
// and Python's ssl with VERIFY_X509_STRICT, on loopback.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:tls';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subtle, x509 } from '../../src/tls/certs-x509.js';
import { CertMinter } from '../../src/tls/certs.js';
import { loadCa } from '../../src/tls/keys.js';
import { CLI, requireLab } from './lab.js';

let dir: string;
beforeAll(async () => {
  await requireLab();
  dir = mkdtempSync(join(tmpdir(), 'ftp-proxy-ca-cli-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const run = (args: string[]) => execa('node', [CLI, ...args], { reject: false, timeout: 30_000 });

describe('ftp-proxy ca create', () => {
  it('writes the CA, prints what to deploy, and refuses to overwrite it', async () => {
    const ca = join(dir, 'ca');
    const r = await run(['ca', 'create', ca]);
    expect(r.exitCode).toBe(0);
    expect(statSync(join(ca, 'ca.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(ca, 'ca.crt')).mode & 0o777).toBe(0o644);
    const fp = new X509Certificate(readFileSync(join(ca, 'ca.crt'))).fingerprint256;
    expect(r.stdout).toContain(fp);
    expect(r.stdout).toContain(`tls_ca_certificate "${join(ca, 'ca.crt')}"`);
    const key = readFileSync(join(ca, 'ca.key'), 'utf8');
    const again = await run(['ca', 'create', ca]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/ca\.key exists; refusing to overwrite a CA/);
    expect(readFileSync(join(ca, 'ca.key'), 'utf8')).toBe(key);
    expect((await run(['ca'])).stderr).toContain('usage: ftp-proxy ca create DIR');
  });

  it('--check-config takes its CA, with and without a TLS mode, and refuses it where minting cannot work', async () => {
    const ca = join(dir, 'ca2');
    expect((await run(['ca', 'create', ca])).exitCode).toBe(0);
    const keys = `tls_ca_certificate "${join(ca, 'ca.crt')}"\ntls_ca_key "${join(ca, 'ca.key')}"\n`;
    const ok = join(dir, 'ok.policy');
    writeFileSync(ok, `tls_client none\n${keys}`);
    const r = await run(['--check-config', '-f', ok]);
    expect(r.stdout).toContain(`${ok}: OK`);
    expect(r.exitCode).toBe(0);

    // Minting mirrors the server's certificate: the CA serves forward mode with a TLS server leg.
    const tls = join(dir, 'tls.policy');
    writeFileSync(tls, `tls_client accept\ntls_server forward\n${keys}`);
    const c = await run(['--check-config', '-f', tls]);
    expect(c.stdout, c.stderr).toContain(`${tls}: OK`);
    expect(c.stdout).toContain('tls_client accept, tls_server forward');
    expect(c.exitCode).toBe(0);
    // ...and without a server leg it cannot: refused, naming the key and why.
    const one = join(dir, 'one-sided.policy');
    writeFileSync(one, `tls_client accept\n${keys}`);
    const o = await run(['--check-config', '-f', one]);
    expect(o.exitCode).toBe(1);
    expect(o.stderr).toContain(`${one}:2: tls_ca_certificate: a minted certificate mirrors the server's, which tls_server none never sees`);
  });
});

describe('minted certificates, as the clients of the FTPS tests check them', () => {
  it('curl, lftp and strict Python accept a certificate minted for the server, by name and by address', async () => {
    const ca = join(dir, 'ca3');
    expect((await run(['ca', 'create', ca])).exitCode).toBe(0);
    const caFile = join(ca, 'ca.crt');
    // the "server's" own certificate, self-signed: the minted one mirrors it
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
    const keys = await subtle.generateKey(alg, true, ['sign', 'verify']);
    const server = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=localhost, O=Lab',
      keys,
      signingAlgorithm: alg,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }])],
    });
    const m = await new CertMinter(loadCa(caFile, join(ca, 'ca.key'))).mint({ serverCert: Buffer.from(server.rawData), sni: 'localhost', address: '127.0.0.1' });
    const srv = createServer({ key: m.keyPem, cert: m.chainPem }, (s) => s.end('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    try {
      for (const host of ['localhost', '127.0.0.1']) {
        const url = `https://${host}:${port}/`;
        const curl = await execa('curl', ['-sS', '--cacert', caFile, url], { reject: false });
        expect(`${host} curl: ${curl.stdout}${curl.stderr}`).toBe(`${host} curl: ok`);
        const lftp = await execa('lftp', ['-c', `set ssl:ca-file ${caFile}; set ssl:verify-certificate yes; cat ${url}`], { reject: false, timeout: 20_000 });
        expect(`${host} lftp: ${lftp.stdout}${lftp.stderr}`).toBe(`${host} lftp: ok`);
        const py = await execa(
          'python3',
          ['-c', `import ssl,socket\nc=ssl.create_default_context(cafile='${caFile}')\nc.verify_flags|=ssl.VERIFY_X509_STRICT\ns=c.wrap_socket(socket.create_connection(('127.0.0.1',${port})),server_hostname='${host}')\nprint('ok')`],
          { reject: false },
        );
        expect(`${host} python: ${py.stdout}${py.stderr}`).toBe(`${host} python: ok`);
      }
      // and a name the server's certificate does not carry is refused, as it would be directly
      const wrong = await execa('curl', ['-sS', '--cacert', caFile, '--resolve', `other.example:${port}:127.0.0.1`, `https://other.example:${port}/`], { reject: false });
      expect(wrong.exitCode).not.toBe(0);
    } finally {
      srv.close();
    }
  });
});
