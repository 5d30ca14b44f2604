// FTPS through the real daemon in forward mode (issue 12): the namespace lab with the shipped dual-stack
// tproxy ruleset (also intercepting tcp/990, and without "the LAN goes out", so data gets through only
// by the proxy's pinholes), the daemon with a policy file, real FTPS servers and real clients that
// verify the proxy's minted certificates against the lab CA. Each download is checked by sha256, and
// after each session the firewall holds no pinhole element.
//
// Servers (server namespace, one address each, port 21):
//   .21 the lab's plain proftpd (lab/lab), for the one-sided cases
//   .22 vsftpd, require_ssl_reuse=YES, PROT C allowed; implicit FTPS on .22 port 990 as well
//   .23 proftpd mod_tls, TLSRequired on (lab/lab)
//   .24 pure-ftpd -Y 2 (lab/lab)
//   .25 vsftpd with a certificate of another CA (fails verification)
//   .26 vsftpd with the passive range of policy-examples/ftps-passthrough.policy
//   2001:db8:2::22 vsftpd over IPv6
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, EXAMPLES, type Lab, type ProxyProcess, ROOT } from './lab.js';
import { type FtpsServer, type LabPki, makeLabPki, startProftpdTls, startPureFtpd } from '../helpers/tls-lab.js';
import {
  conntrackReset,
  dataPath,
  etcOverlay,
  fetchFile,
  type FtpsLab,
  ftpsLabUp,
  heldPassthrough,
  logSince,
  logTail,
  MATRIX,
  matrixRow,
  MiB,
  mintPolicy as labMintPolicy,
  nftTable,
  PASSTHROUGH_POLICY,
  passthroughRange,
  probe,
  pyClient,
  rawFtps,
  requireFtpsLab,
  type Row,
  writePolicy,
} from '../helpers/ftps-lab.js';

const CLIENT = '192.168.1.10';
const PLAIN = '198.51.100.21';
const VS = '198.51.100.22';
const PRO = '198.51.100.23';
const PURE = '198.51.100.24';
const BAD = '198.51.100.25';
const PASS = '198.51.100.26';
const VS6 = '2001:db8:2::22';
const FORWARD_POLICY = `${ROOT}policy-examples/ftps-forward.policy`;

let f: FtpsLab;
let lab: Lab;
/** The servers' CA (and the configured certificates'). */
let pki: LabPki;
/** The CA the proxy mints from, which the clients trust. */
let mint: LabPki;
let sums: Record<string, string>;
const passRange = passthroughRange();
let vsftpd: FtpsServer;

/** The forward policy of these tests: certificates minted from the proxy's CA, servers checked against the lab CA. */
const mintPolicy = (client?: 'accept' | 'require'): string[] => labMintPolicy(f, client);

let policies = 0;
async function startProxy(policy: string[] | string, env: Record<string, string> = {}, wrap: string[] = []): Promise<ProxyProcess> {
  const file = typeof policy === 'string' ? policy : writePolicy(lab, `ftps-${++policies}`, policy);
  // both families: the dual-stack ruleset sends IPv6 to [::1]:8021
  return lab.proxy(['-D', '7', '-b', '127.0.0.1', '-b', '::1', '-f', file], env, [], wrap);
}

beforeAll(async () => {
  await requireFtpsLab(['vsftpd', 'pure-ftpd', 'proftpd-tls', 'openssl', 'python3', 'curl']);
  // the lab's plain proftpd on .21 only, so that the FTPS servers can have port 21 on their addresses
  // (and its command log, to show what a plain server receives in the one-sided case)
  f = await ftpsLabUp('forward', {
    ruleset: `${EXAMPLES}forward-dualstack.nft`,
    implicit: true,
    addresses: [VS, PRO, PURE, BAD, PASS, VS6],
    ftpd: (l) => ['LogFormat cmds "%m %J"', `ExtendedLog ${l.runDir}/plain-commands.log ALL cmds`],
  });
  ({ lab, pki, mint, sums } = f);
  const other = await makeLabPki(`${lab.runDir}/pki-other`, 'ftp-proxy test other CA');
  const data = `${lab.runDir}/data`;
  const vs = await pki.issue('vsftpd', ['ftp.lab', VS, VS6]);
  vsftpd = await f.vsftpd({ dir: 'vs', address: VS, ...vs, pasv: [52000, 52099] });
  await f.vsftpd({ dir: 'vs-implicit', address: VS, port: 990, implicit: true, ...vs, pasv: [52100, 52199] });
  await f.vsftpd({ dir: 'vs6', address: VS6, ...vs, pasv: [52500, 52599] });
  const pro = await pki.issue('proftpd', [PRO]);
  f.servers.push(await startProftpdTls({ ns: lab.srv, dir: lab.runDir, address: PRO, port: 21, bindTight: true, passwd: `${lab.runDir}/ftpd.passwd`, ...pro, pasv: [52200, 52299] }));
  const pure = await pki.issue('pure', [PURE]);
  f.servers.push(await startPureFtpd({ ns: lab.srv, dir: lab.runDir, address: PURE, port: 21, root: data, ...pure, pasv: [52300, 52399] }));
  const bad = await other.issue('bad', [BAD]);
  await f.vsftpd({ dir: 'vs-bad', address: BAD, ...bad, pasv: [52400, 52499] });
  await f.vsftpd({ dir: 'vs-pass', address: PASS, ...(await pki.issue('pass', [PASS])), pasv: passRange });
});

afterAll(async () => {
  await f?.down();
});

/** One matrix row against `host` (data ports `ports`) with all of matrixRow's checks. */
const row = (proxy: ProxyProcess, r: Row, host: string, ports: [number, number], extra: { user?: string; password?: string } = {}) =>
  matrixRow(lab, proxy, r, { host, server: host, ports, client: CLIENT, ca: mint.caCert, sums, ...extra });

describe('forward mode, minted certificates: vsftpd (require_ssl_reuse=YES)', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await startProxy(mintPolicy());
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it.each(MATRIX)('%s %s PROT %s TLS %s %s', async (...r) => {
    await row(proxy, r, VS, [52000, 52099]);
  });

  it.each([
    ['curl', 'pasv', 'P', '1.3', 'test1M.bin'],
    ['lftp', 'epsv', 'C', '1.2', 'test1M.bin'],
  ] as Row[])('implicit FTPS (intercepted port 990): %s %s PROT %s TLS %s', async (...r) => {
    await matrixRow(lab, proxy, r, { host: VS, implicit: true, server: VS, ports: [52100, 52199], client: CLIENT, ca: mint.caCert, sums });
  });

  it('FEAT through the proxy lists AUTH TLS, PBSZ and PROT', async () => {
    const r = await rawFtps(lab, { host: VS, steps: [{ line: 'FEAT' }, { line: 'QUIT' }] });
    expect(r.replies[1]).toMatch(/^ AUTH TLS$/m);
    expect(r.replies[1]).toMatch(/^ PBSZ$/m);
    expect(r.replies[1]).toMatch(/^ PROT$/m);
  });

  it('under TLS, REIN gets 502 and a second AUTH 503, and the session goes on', async () => {
    const { out, stdout } = await pyClient(lab, { host: VS, cafile: mint.caCert, commands: ['REIN', 'AUTH TLS', 'NOOP'], files: ['test1M.bin'] });
    expect(out.commands, stdout).toEqual([expect.stringMatching(/^REIN -> 502 /), expect.stringMatching(/^AUTH TLS -> 503 /), expect.stringMatching(/^NOOP -> 200 /)]);
    expect(out.ok, stdout).toBe(true);
    expect(out.transfers[0]!.sha256).toBe(sums['test1M.bin']);
    expect(await lab.waitNoPinholes()).toBe(0);
  });

  it("the client sees a minted certificate: the proxy's CA, the server's subject, the server's address", async () => {
    const r = await lab.exec('cli', ['bash', '-c', `openssl s_client -connect ${VS}:21 -starttls ftp -CAfile ${mint.caCert} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -issuer -subject -ext subjectAltName`], { reject: false, timeout: 20_000 });
    expect(r.stdout).toMatch(/^issuer=CN ?= ?ftp-proxy test proxy CA$/m);
    expect(r.stdout).toMatch(/^subject=.*CN ?= ?ftp\.lab/m);
    expect(r.stdout).toContain(`IP Address:${VS}`);
    // and not the server's own, which only the lab CA signs
    const direct = await lab.exec('cli', ['bash', '-c', `openssl s_client -connect ${VS}:21 -starttls ftp -CAfile ${pki.caCert} -verify_return_error </dev/null 2>&1 | grep -c 'Verify return code: 0'`], { reject: false, timeout: 20_000 });
    expect(direct.stdout.trim()).toBe('0');
    expect(await lab.waitNoPinholes()).toBe(0);
  });

  it.each(['active', 'passive'] as const)('CCC (curl --ftp-ssl-ccc, --ftp-ssl-ccc-mode %s, PROT C): the control channel back to plain text, the data through the kernel pinhole', async (ccc) => {
    await conntrackReset(lab);
    const from = proxy.lines.length;
    const r = await fetchFile(lab, { client: 'curl', host: VS, mode: 'pasv', prot: 'C', file: 'test1M.bin', ca: mint.caCert, ccc });
    const log = logSince(proxy, from);
    expect(r.ok, `${r.output}\n--- proxy log ---\n${log}`).toBe(true);
    expect(r.sha256).toBe(sums['test1M.bin']);
    // curl -v: the CCC it sent and the proxy's 200
    expect(r.output).toMatch(/^> CCC/m);
    expect(r.output).toMatch(/^< 200/m);
    expect(await lab.waitNoPinholes()).toBe(0);
    expect(await dataPath(lab, { client: CLIENT, server: VS, ports: [52000, 52099], active: false, size: MiB })).toBe('kernel');
  });

  it('a client that sends garbage instead of a ClientHello: the session ends, the daemon serves the next one', async () => {
    const from = proxy.lines.length;
    const garbage = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(20)).toString('hex');
    const explicit = await rawFtps(lab, { host: VS, steps: [{ line: 'AUTH TLS' }, { bytes: garbage }, { close: 10_000 }] });
    expect(explicit.replies[1]).toMatch(/^AUTH TLS -> 234/);
    expect(explicit.closed, JSON.stringify(explicit)).toBe(true);
    // implicit: garbage as the very first bytes on port 990
    const implicit = await rawFtps(lab, { host: VS, port: 990, greeting: false, steps: [{ bytes: garbage }, { close: 10_000 }] });
    expect(implicit.closed, JSON.stringify(implicit)).toBe(true);
    expect(proxy.exitCode).toBeNull();
    expect(await lab.waitNoPinholes()).toBe(0);
    const r = await fetchFile(lab, { client: 'curl', host: VS, mode: 'epsv', prot: 'P', file: 'test1M.bin', ca: mint.caCert });
    expect(r.ok, `${r.output}\n${logTail(proxy)}`).toBe(true);
    expect(r.sha256).toBe(sums['test1M.bin']);
    // one line per failed handshake, naming the client leg
    const log = logSince(proxy, from);
    expect(log.match(/^#\d+ .*client.*(TLS|handshake).*$/gim)?.length ?? 0, log).toBeGreaterThanOrEqual(2);
  });

  it('IPv6: curl EPSV PROT P TLS 1.3 and lftp EPRT PROT C TLS 1.2 to vsftpd over IPv6', async () => {
    for (const [client, mode, prot, version] of [
      ['curl', 'epsv', 'P', '1.3'],
      ['lftp', 'eprt', 'C', '1.2'],
    ] as const) {
      const from = proxy.lines.length;
      const r = await fetchFile(lab, { client, host: VS6, mode, prot, version, file: 'test1M.bin', ca: mint.caCert });
      const log = logSince(proxy, from);
      expect(r.ok, `${client} ${mode}: ${r.output}\n--- proxy log ---\n${log}`).toBe(true);
      expect(r.sha256).toBe(sums['test1M.bin']);
      expect(log).toMatch(new RegExp(`client TLS: TLSv${version.replace('.', '\\.')} `));
      expect(await lab.waitNoPinholes()).toBe(0);
    }
  });
});

describe('forward mode, minted certificates: proftpd mod_tls (TLSRequired on) and pure-ftpd (-Y 2)', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await startProxy(mintPolicy());
  });
  afterAll(async () => {
    await proxy?.stop();
  });
  const lab1 = { user: 'lab', password: 'lab' };

  it.each([
    ['curl', 'pasv', 'P', '1.3', 'test20M.bin'],
    ['lftp', 'epsv', 'P', '1.2', 'test1M.bin'],
    ['python', 'port', 'P', '1.3', 'test1M.bin'],
    ['python', 'eprt', 'P', '1.2', 'test1M.bin'],
  ] as Row[])('proftpd: %s %s PROT %s TLS %s %s', async (...r) => {
    await row(proxy, r, PRO, [52200, 52299], lab1);
  });

  it.each([
    ['curl', 'epsv', 'P', '1.2', 'test1M.bin'],
    ['lftp', 'pasv', 'C', '1.3', 'test1M.bin'],
    ['python', 'eprt', 'P', '1.2', 'test1M.bin'],
    ['python', 'pasv', 'P', '1.3', 'test20M.bin'],
  ] as Row[])('pure-ftpd: %s %s PROT %s TLS %s %s', async (...r) => {
    await row(proxy, r, PURE, [52300, 52399], lab1);
  });
});

describe('without tls_* keys (tls_client none, the default)', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await startProxy(['# no tls_* key']);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it("AUTH gets 504, and FEAT drops vsftpd's AUTH TLS, PBSZ and PROT", async () => {
    const r = await rawFtps(lab, { host: VS, steps: [{ line: 'FEAT' }, { line: 'AUTH TLS' }, { line: 'AUTH SSL' }, { line: 'QUIT' }] });
    expect(r.replies[1]).toMatch(/^FEAT -> 211/);
    expect(r.replies[1]).not.toMatch(/^ (AUTH|PBSZ|PROT)/m);
    expect(r.replies[2]).toMatch(/^AUTH TLS -> 504 /);
    expect(r.replies[3]).toMatch(/^AUTH SSL -> 504 /);
    // vsftpd itself lists them (ssl_enable=YES): the proxy took them out
    expect(vsftpd.log()).toMatch(/211-Features:[\s\S]*AUTH TLS/);
    expect(await lab.waitNoPinholes()).toBe(0);
  });
});

describe('one-sided TLS', () => {
  let proxy: ProxyProcess | undefined;
  afterAll(async () => {
    await proxy?.stop();
  });

  it('a TLS client and a plain server (tls_server none): the proxy answers PBSZ and PROT itself', async () => {
    // a configured certificate: a minted one mirrors the server's, and a plain server has none
    const plain = await pki.issue('plain', [PLAIN]);
    proxy = await startProxy(['tls_client accept', 'tls_server none', `tls_certificate "${plain.cert}"`, `tls_key "${plain.key}"`]);
    for (const [client, mode, prot, version] of [
      ['curl', 'pasv', 'P', '1.3'],
      ['python', 'port', 'C', '1.2'],
      ['lftp', 'epsv', 'P', '1.2'],
    ] as const) {
      const from = proxy.lines.length;
      const r = await fetchFile(lab, { client, host: PLAIN, mode, prot, version, user: 'lab', password: 'lab', file: 'test1M.bin', ca: pki.caCert });
      const log = logSince(proxy, from);
      expect(r.ok, `${client} ${mode} ${prot}: ${r.output}\n--- proxy log ---\n${log}`).toBe(true);
      expect(r.sha256).toBe(sums['test1M.bin']);
      expect(log).toMatch(new RegExp(`client TLS: TLSv${version.replace('.', '\\.')} `));
      expect(log).not.toMatch(/server TLS:/);
      expect(await lab.waitNoPinholes()).toBe(0);
    }
    // the plain server saw the logins and transfers, and nothing of TLS
    const seen = readFileSync(`${lab.runDir}/plain-commands.log`, 'utf8');
    expect(seen).toMatch(/^RETR test1M\.bin$/m);
    expect(seen).not.toMatch(/^(AUTH|PBSZ|PROT|CCC)\b/m);
    await proxy.stop();
  });

  it('a plain client and a TLS server (tls_server require): vsftpd, which demands TLS for logins and data, serves it', async () => {
    proxy = await startProxy(['tls_server require', `tls_server_ca "${pki.caCert}"`]);
    for (const [client, mode] of [
      ['curl', 'pasv'],
      ['lftp', 'port'],
      ['python', 'epsv'],
    ] as const) {
      const from = proxy.lines.length;
      const r = await fetchFile(lab, { client, host: VS, mode, plain: true, file: 'test1M.bin', ca: pki.caCert });
      const log = logSince(proxy, from);
      expect(r.ok, `${client} ${mode}: ${r.output}\n--- proxy log ---\n${log}`).toBe(true);
      expect(r.sha256).toBe(sums['test1M.bin']);
      expect(log).toMatch(/server TLS: TLSv1\.[23] /);
      expect(log).not.toMatch(/client TLS:/);
      expect(await lab.waitNoPinholes()).toBe(0);
    }
    await proxy.stop();
  });
});

describe('tls_client require', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await startProxy(mintPolicy('require'));
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('a plain USER gets 530 naming AUTH TLS, and never reaches the server; FEAT and NOOP are answered', async () => {
    const r = await rawFtps(lab, { host: VS, steps: [{ line: 'FEAT' }, { line: 'NOOP' }, { line: 'USER notsent-4711' }, { line: 'PASS secret' }, { line: 'QUIT' }] });
    expect(r.replies[1]).toMatch(/^FEAT -> 211/);
    // NOOP goes on to the server (vsftpd wants a login first); the proxy's 530 is for the rest
    expect(r.replies[2]).toMatch(/^NOOP -> \d{3} /);
    expect(r.replies[2]).not.toMatch(/AUTH TLS/);
    expect(r.replies[3]).toMatch(/^USER notsent-4711 -> 530 .*AUTH TLS/);
    expect(r.replies[4]).toMatch(/^PASS secret -> 530/);
    expect(vsftpd.log()).not.toContain('notsent-4711');
    // Python's ftplib, plain: its login fails with the 530
    const { stdout } = await pyClient(lab, { host: VS, tls: false, files: ['small.txt'] });
    expect(stdout).toMatch(/530/);
    expect(await lab.waitNoPinholes()).toBe(0);
  });

  it('with AUTH TLS the same client gets its file', async () => {
    const r = await fetchFile(lab, { client: 'python', host: VS, mode: 'pasv', prot: 'P', file: 'test1M.bin', ca: mint.caCert });
    expect(r.ok, `${r.output}\n${logTail(proxy)}`).toBe(true);
    expect(r.sha256).toBe(sums['test1M.bin']);
  });
});

describe('a server whose certificate fails verification', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await startProxy(mintPolicy());
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('the client gets a 4xx/5xx naming the reason, the log says why, the daemon goes on', async () => {
    const from = proxy.lines.length;
    const { out, stdout } = await pyClient(lab, { host: BAD, cafile: mint.caCert, files: ['small.txt'] });
    // OpenSSL's code for a certificate from an unknown CA
    expect(out.error, stdout).toMatch(/[45]\d\d .*(UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to (get local issuer|verify)|certificate)/i);
    const c = await fetchFile(lab, { client: 'curl', host: BAD, mode: 'pasv', prot: 'P', file: 'small.txt', ca: mint.caCert });
    expect(c.ok).toBe(false);
    expect(c.output).toMatch(/^< [45]\d\d .*(UNABLE_TO_VERIFY|certificate|verify)/im);
    const log = logSince(proxy, from);
    expect(log).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to (get local issuer|verify)/i);
    expect(proxy.exitCode).toBeNull();
    expect(await lab.waitNoPinholes()).toBe(0);
    const ok = await fetchFile(lab, { client: 'curl', host: VS, mode: 'pasv', prot: 'P', file: 'small.txt', ca: mint.caCert });
    expect(ok.ok, ok.output).toBe(true);
  });
});

describe('tls_server_verify no', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await startProxy(['tls_client accept', 'tls_server forward', `tls_ca_certificate "${mint.caCert}"`, `tls_ca_key "${mint.caKey}"`, 'tls_server_verify no']);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('the server with the unknown CA serves the file, and the client still sees a minted certificate', async () => {
    const r = await fetchFile(lab, { client: 'curl', host: BAD, mode: 'epsv', prot: 'P', version: '1.3', file: 'test1M.bin', ca: mint.caCert });
    expect(r.ok, `${r.output}\n${logTail(proxy)}`).toBe(true);
    expect(r.sha256).toBe(sums['test1M.bin']);
    expect(await lab.waitNoPinholes()).toBe(0);
  });
});

describe('passthrough (policy-examples/ftps-passthrough.policy as shipped)', () => {
  let proxy: ProxyProcess;
  beforeAll(async () => {
    proxy = await startProxy(PASSTHROUGH_POLICY);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  const rangeText = (): string => `${passRange[0]}-${passRange[1]}`;

  it('the range pinhole is in the table during the session (the range reaches the server) and gone after it', async () => {
    expect(await nftTable(lab)).not.toContain(rangeText());
    // a TCP connection from the client to PASS: "refused" (it reached vsftpd, refused there) or "dropped"
    expect(await probe(lab, PASS, passRange[0] + 7)).toBe('dropped');
    const last = await heldPassthrough(lab, proxy, { host: PASS, ca: pki.caCert, mode: 'pasv', version: '1.3', sum: sums['test1M.bin']! }, async () => {
      const during = await nftTable(lab);
      expect(during, during).toContain(rangeText());
      expect(await probe(lab, PASS, passRange[0] + 7)).toBe('refused');
    });
    expect(last.version).toBe('TLSv1.3');
    expect(await lab.waitNoPinholes()).toBe(0);
    expect(await nftTable(lab)).not.toContain(rangeText());
    expect(await probe(lab, PASS, passRange[0] + 7)).toBe('dropped');
  });

  it('curl (EPSV) and lftp (PASV) through the blind relay, verifying the server itself', async () => {
    for (const [client, mode, version, file] of [
      ['curl', 'epsv', '1.2', 'test20M.bin'],
      ['lftp', 'pasv', '1.3', 'test1M.bin'],
    ] as const) {
      const r = await fetchFile(lab, { client, host: PASS, mode, prot: 'P', version, file, ca: pki.caCert });
      expect(r.ok, `${client}: ${r.output}\n${logTail(proxy)}`).toBe(true);
      expect(r.sha256).toBe(sums[file]);
      expect(await lab.waitNoPinholes()).toBe(0);
    }
  });

  it('PORT before AUTH (still readable) is refused with a 5xx', async () => {
    const r = await rawFtps(lab, { host: PASS, steps: [{ line: `PORT ${CLIENT.replaceAll('.', ',')},200,10` }, { line: `EPRT |1|${CLIENT}|51210|` }, { line: 'QUIT' }] });
    expect(r.replies[1]).toMatch(/^PORT .* -> 5\d\d/);
    expect(r.replies[2]).toMatch(/^EPRT .* -> 5\d\d/);
    expect(await lab.waitNoPinholes()).toBe(0);
  });
});

describe('shipped FTPS policies', () => {
  it('each passes --check-config as shipped (its files under /etc/ftp-proxy, shown by an overlay)', async () => {
    const crt = `${lab.runDir}/pki/ca.pem`;
    const files = {
      'ca/ca.crt': crt,
      'ca/ca.key': `${lab.runDir}/pki/ca.key`,
      'ftp.example.com.crt': `${lab.runDir}/pki/vsftpd.pem`,
      'ftp.example.com.key': `${lab.runDir}/pki/vsftpd.key`,
      'internal-ca.crt': crt,
    };
    for (const f of ['ftps-forward', 'ftps-reverse', 'ftps-passthrough']) {
      const wrap = etcOverlay(lab, files);
      const r = await execa(wrap[0]!, [...wrap.slice(1), process.execPath, CLI, '-f', `${ROOT}policy-examples/${f}.policy`, '--check-config'], { reject: false });
      expect(r.exitCode, `${f}: ${r.stdout}\n${r.stderr}`).toBe(0);
      expect(readFileSync(`${ROOT}policy-examples/${f}.policy`, 'utf8')).toMatch(/^# When to use:/m);
    }
  });

  it('ftps-forward.policy as shipped: the daemon mints from /etc/ftp-proxy/ca and checks servers against the system CAs (the lab CA added with NODE_EXTRA_CA_CERTS)', async () => {
    const wrap = etcOverlay(lab, { 'ca/ca.crt': mint.caCert, 'ca/ca.key': mint.caKey });
    const proxy = await startProxy(FORWARD_POLICY, { NODE_EXTRA_CA_CERTS: pki.caCert }, wrap);
    try {
      const r = await fetchFile(lab, { client: 'lftp', host: VS, mode: 'epsv', prot: 'P', version: '1.3', file: 'test1M.bin', ca: mint.caCert });
      expect(r.ok, `${r.output}\n${logTail(proxy)}`).toBe(true);
      expect(r.sha256).toBe(sums['test1M.bin']);
      expect(await lab.waitNoPinholes()).toBe(0);
    } finally {
      await proxy.stop();
    }
  });
});
