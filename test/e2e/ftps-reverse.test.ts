// FTPS through the real daemon in reverse mode (issue 12): -R publishes an internal vsftpd
// (require_ssl_reuse=YES) on the firewall's public address, with policy-examples/ftps-reverse.policy as
// shipped (its /etc/ftp-proxy files shown to the daemon by an overlay in a mount namespace of its own):
// a configured certificate for the public name, forced FTPS, the internal server checked against its
// CA. The shipped reverse ruleset without "the internal network goes out", so data passes only by the
// proxy's pinholes. Each download is checked by sha256; after each session no pinhole is left.
//
//   client 203.0.113.50 -> 203.0.113.5:21 (firewall) -> 10.0.0.22:21 vsftpd (and :990, implicit)
//                                                    -> 10.0.0.21:21 the lab's plain proftpd (one-sided)
//                                                    -> 10.0.0.23:21 vsftpd for passthrough (PASV names
//                                                       the public address, as behind any NAT)
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, type Lab, type ProxyProcess, ROOT } from './lab.js';
import { type LabPki } from '../helpers/tls-lab.js';
import {
  etcOverlay,
  fetchFile,
  type FtpsLab,
  ftpsLabUp,
  heldPassthrough,
  logSince,
  logTail,
  MATRIX,
  matrixRow,
  nftTable,
  PASSTHROUGH_POLICY,
  passthroughRange,
  probe,
  rawFtps,
  requireFtpsLab,
  type Row,
  writePolicy,
} from '../helpers/ftps-lab.js';

const PUBLIC = '203.0.113.5';
const CLIENT = '203.0.113.50';
const PLAIN = '10.0.0.21';
const VS = '10.0.0.22';
const PASS = '10.0.0.23';
const REVERSE_POLICY = `${ROOT}policy-examples/ftps-reverse.policy`;

let f: FtpsLab;
let lab: Lab;
let pki: LabPki;
let sums: Record<string, string>;
let publicCert: { cert: string; key: string };
const passRange = passthroughRange();

/** The daemon with the shipped reverse policy, its files where the policy names them. */
async function shippedProxy(args: string[]): Promise<ProxyProcess> {
  const wrap = etcOverlay(lab, { 'ftp.example.com.crt': publicCert.cert, 'ftp.example.com.key': publicCert.key, 'internal-ca.crt': pki.caCert });
  return lab.proxy(['-D', '7', ...args, '-f', REVERSE_POLICY], {}, [], wrap);
}

beforeAll(async () => {
  await requireFtpsLab(['vsftpd', 'openssl', 'python3', 'curl']);
  f = await ftpsLabUp('reverse', { ruleset: `${EXAMPLES}reverse.nft`, addresses: [VS, PASS] });
  ({ lab, pki, sums } = f);
  publicCert = await pki.issue('public', ['ftp.example.com', PUBLIC]);
  const vs = await pki.issue('vsftpd', [VS]);
  await f.vsftpd({ ...vs, address: VS, dir: 'vs', pasv: [52000, 52099] });
  await f.vsftpd({ ...vs, address: VS, dir: 'vs-implicit', port: 990, implicit: true, pasv: [52100, 52199] });
  // passthrough: the client verifies the server's own certificate, so it names the public address
  const pass = await pki.issue('pass', ['ftp.example.com', PUBLIC]);
  await f.vsftpd({ ...pass, address: PASS, dir: 'vs-pass', pasv: passRange, pasvAddress: PUBLIC });
});

afterAll(async () => {
  await f?.down();
});

describe('reverse mode, ftps-reverse.policy as shipped (tls_client require, tls_server forward): vsftpd', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await shippedProxy(['-R', VS, '-P', '21']);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it.each(MATRIX)('%s %s PROT %s TLS %s %s', async (...r) => {
    await matrixRow(lab, proxy, r, { host: PUBLIC, server: VS, ports: [52000, 52099], client: CLIENT, ca: pki.caCert, sums });
  });

  it('the client sees the configured certificate (the public name), not the server one', async () => {
    const r = await lab.exec('cli', ['bash', '-c', `openssl s_client -connect ${PUBLIC}:21 -starttls ftp -CAfile ${pki.caCert} -verify_return_error </dev/null 2>&1 | openssl x509 -noout -subject -ext subjectAltName`], { reject: false, timeout: 20_000 });
    expect(r.stdout).toMatch(/CN ?= ?ftp\.example\.com/);
    expect(r.stdout).toContain('IP Address:203.0.113.5');
    expect(r.stdout).not.toContain(VS);
    expect(await lab.waitNoPinholes()).toBe(0);
  });

  it('a plain USER is refused with 530 (forced FTPS)', async () => {
    const r = await rawFtps(lab, { host: PUBLIC, steps: [{ line: 'USER notsent-4712' }, { line: 'QUIT' }] });
    expect(r.replies[1]).toMatch(/^USER notsent-4712 -> 530 .*AUTH TLS/);
    // vsftpd logs every command it gets (log_ftp_protocol=YES): this one never left the proxy
    expect(f.servers[0]!.log()).not.toContain('notsent-4712');
    expect(await lab.waitNoPinholes()).toBe(0);
  });
});

describe('reverse mode, implicit FTPS to the server (-P 990), explicit to the client', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await shippedProxy(['-R', VS, '-P', '990']);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it.each([
    ['curl', 'pasv', 'P', '1.3', 'test1M.bin'],
    ['lftp', 'port', 'C', '1.2', 'test1M.bin'],
    ['python', 'epsv', 'P', '1.2', 'test20M.bin'],
  ] as Row[])('%s %s PROT %s TLS %s %s', async (...r) => {
    await matrixRow(lab, proxy, r, { host: PUBLIC, server: VS, ports: [52100, 52199], client: CLIENT, ca: pki.caCert, sums });
  });
});

describe('reverse mode, one-sided: a TLS client, the internal server plain (tls_server none)', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    const policy = writePolicy(lab, 'reverse-onesided', ['tls_client require', 'tls_server none', `tls_certificate "${publicCert.cert}"`, `tls_key "${publicCert.key}"`]);
    proxy = await lab.proxy(['-D', '7', '-R', PLAIN, '-P', '21', '-f', policy]);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it.each([
    ['lftp', 'epsv', 'P', '1.3'],
    ['python', 'pasv', 'C', '1.2'],
    ['curl', 'pasv', 'P', '1.2'],
  ] as const)('%s %s PROT %s TLS %s: the proxy answers PBSZ/PROT itself, the server sees plain FTP', async (client, mode, prot, version) => {
    const from = proxy.lines.length;
    const r = await fetchFile(lab, { client, host: PUBLIC, mode, prot, version, user: 'lab', password: 'lab', file: 'test1M.bin', ca: pki.caCert });
    const log = logSince(proxy, from);
    expect(r.ok, `${r.output}\n--- proxy log ---\n${log}`).toBe(true);
    expect(r.sha256).toBe(sums['test1M.bin']);
    expect(log).toMatch(new RegExp(`client TLS: TLSv${version.replace('.', '\\.')} `));
    expect(log).not.toMatch(/server TLS:/);
    expect(await lab.waitNoPinholes()).toBe(0);
  });

  it('the shipped policy file says when to use it', () => {
    expect(readFileSync(REVERSE_POLICY, 'utf8')).toMatch(/^# When to use:/m);
  });

  it('the daemon is still up after all of it', () => {
    expect(proxy.exitCode, logTail(proxy)).toBeNull();
  });
});

describe('reverse mode, passthrough (policy-examples/ftps-passthrough.policy as shipped)', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await lab.proxy(['-D', '7', '-R', PASS, '-P', '21', '-f', PASSTHROUGH_POLICY]);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("the public address's range reaches the internal server during the session only", async () => {
    const range = `${passRange[0]}-${passRange[1]}`;
    // a TCP connection to the public address: "refused" (DNATed to vsftpd, nothing listens) or "dropped"
    expect(await probe(lab, PUBLIC, passRange[0] + 9)).toBe('dropped');
    await heldPassthrough(lab, proxy, { host: PUBLIC, ca: pki.caCert, mode: 'epsv', version: '1.2', sum: sums['test1M.bin']! }, async () => {
      expect(await nftTable(lab)).toContain(range);
      expect(await probe(lab, PUBLIC, passRange[0] + 9)).toBe('refused');
    });
    expect(await lab.waitNoPinholes()).toBe(0);
    expect(await nftTable(lab)).not.toContain(range);
    expect(await probe(lab, PUBLIC, passRange[0] + 9)).toBe('dropped');
  });

  it('curl (EPSV, 20 MiB) and lftp (PASV) through the blind relay', async () => {
    for (const [client, mode, version, file] of [
      ['curl', 'epsv', '1.3', 'test20M.bin'],
      ['lftp', 'pasv', '1.2', 'test1M.bin'],
    ] as const) {
      const r = await fetchFile(lab, { client, host: PUBLIC, mode, prot: 'P', version, file, ca: pki.caCert });
      expect(r.ok, `${client}: ${r.output}\n${logTail(proxy)}`).toBe(true);
      expect(r.sha256).toBe(sums[file]);
      expect(await lab.waitNoPinholes()).toBe(0);
    }
  });
});
