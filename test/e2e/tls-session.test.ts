// FTPS through the daemon itself (Session's TLS legs), the core cases: forward mode with a minted
// certificate, curl verifying it against the lab CA, vsftpd with require_ssl_reuse=YES behind a real
// default-deny nftables firewall. PROT P goes through the TLS relay (both legs resumed), PROT C
// through the kernel pinhole; CCC; tls_client require; a server certificate that fails verification;
// garbage instead of a ClientHello. The wider matrix is in test/e2e/ftps*.test.ts.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, EXAMPLES, Lab, type ProxyProcess, requireLab } from './lab.js';
import { type FtpsServer, makeLabPki, requireTlsLab, startVsftpd, type LabPki } from '../helpers/tls-lab.js';

const SRV = '198.51.100.21';
const PORT = 2121;
/** The same server's files from a plain vsftpd (one-sided set-ups) and an implicit FTPS one. */
const PLAIN_PORT = 2122;
const IMPLICIT_PORT = 990;
/** A vsftpd whose certificate names only ftp.lab, not its address. */
const NAMED_PORT = 2123;

let lab: Lab;
let pki: LabPki;
let vsftpd: FtpsServer;
const others: FtpsServer[] = [];
let proxyCert: { cert: string; key: string };
let proxy: ProxyProcess | null = null;

/** The shipped forward ruleset, intercepting the lab server's FTPS port too. */
function ruleset(): string {
  const text = readFileSync(`${EXAMPLES}forward-redirect.nft`, 'utf8').replace('tcp dport { 21, 990 } dnat', `tcp dport { 21, ${PORT}, ${PLAIN_PORT}, ${IMPLICIT_PORT}, ${NAMED_PORT} } dnat`);
  const file = `${lab.runDir}/tls-forward.nft`;
  writeFileSync(file, text);
  return file;
}

async function startProxy(policy: string, args: string[] = []): Promise<ProxyProcess> {
  await proxy?.stop();
  const file = `${lab.runDir}/tls-${Date.now()}.policy`;
  writeFileSync(file, policy, { mode: 0o644 });
  proxy = await lab.proxy(['-D', '7', '-f', file, ...args]);
  return proxy;
}

const forwardPolicy = (): string =>
  [`tls_client accept`, `tls_server forward`, `tls_ca_certificate "${pki.caCert}"`, `tls_ca_key "${pki.caKey}"`, `tls_server_ca "${pki.caCert}"`, ''].join('\n');

async function curl(args: string[], file: string, url = `ftp://anonymous:lab%40@${SRV}:${PORT}`): Promise<{ code: number; sum: string; stderr: string }> {
  const out = `${lab.runDir}/dl/${file}-${Date.now()}`;
  const r = await lab.exec('cli', ['curl', '-sS', '--max-time', '60', '--cacert', pki.caCert, ...args, '-o', out, `${url}/${file}`], { reject: false, timeout: 90_000 });
  const sum = r.exitCode === 0 ? (await lab.exec('cli', ['sha256sum', out])).stdout.split(' ')[0]! : '';
  return { code: r.exitCode ?? -1, sum, stderr: r.stderr };
}

beforeAll(async () => {
  await requireLab();
  await requireTlsLab(['vsftpd', 'openssl', 'curl']);
  lab = await Lab.up('forward');
  pki = await makeLabPki(`${lab.runDir}/pki`);
  const { cert, key } = await pki.issue('vsftpd', ['ftp.lab', SRV]);
  proxyCert = await pki.issue('proxy', ['ftp.lab', SRV]);
  vsftpd = await startVsftpd({ ns: lab.srv, dir: lab.runDir, address: SRV, root: `${lab.runDir}/data`, cert, key, port: PORT, pasv: [52000, 52099], forceDataSsl: false });
  others.push(await startVsftpd({ ns: lab.srv, dir: lab.runDir, address: SRV, root: `${lab.runDir}/data`, cert, key, port: PLAIN_PORT, pasv: [52100, 52199], ssl: false }));
  others.push(await startVsftpd({ ns: lab.srv, dir: lab.runDir, address: SRV, root: `${lab.runDir}/data`, cert, key, port: IMPLICIT_PORT, pasv: [52200, 52299], implicit: true }));
  const named = await pki.issue('named', ['ftp.lab']);
  others.push(await startVsftpd({ ns: lab.srv, dir: lab.runDir, address: SRV, root: `${lab.runDir}/data`, cert: named.cert, key: named.key, port: NAMED_PORT, pasv: [52300, 52399] }));
  await lab.loadRuleset(ruleset());
  await lab.exec('cli', ['mkdir', '-p', `${lab.runDir}/dl`]);
}, 120_000);

afterAll(async () => {
  await proxy?.stop().catch(() => undefined);
  await vsftpd?.stop().catch(() => undefined);
  for (const o of others) await o.stop().catch(() => undefined);
  await lab?.down();
});

describe('FTPS through the daemon: forward mode, minted certificate, vsftpd require_ssl_reuse=YES', () => {
  beforeAll(async () => {
    await startProxy(forwardPolicy());
  });

  for (const [how, args] of [
    ['PASV', []],
    ['EPSV', ['--ftp-pasv']],
  ] as [string, string[]][]) {
    for (const tls of ['1.2', '1.3']) {
      it(`curl --ssl-reqd, PROT P, ${how}, TLS ${tls}: 20 MiB by sha256 through the relay, no pinhole left`, async () => {
        const r = await curl(['--ssl-reqd', '--tlsv1.2', '--tls-max', tls, ...args, ...(how === 'PASV' ? ['--disable-epsv'] : [])], 'test20M.bin');
        expect(r.stderr, proxy!.log.split('\n').slice(-40).join('\n')).toBe('');
        expect(r.sum).toBe(lab.sha256('test20M.bin'));
        expect(await lab.waitNoPinholeObjects('nftables')).toBe(0);
      });
    }
  }

  it('lftp, PROT P, active mode (PORT): small file by sha256', async () => {
    const out = `${lab.runDir}/dl/lftp-port`;
    const script = `set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:passive-mode off; set ssl:ca-file ${pki.caCert}; set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; get test20M.bin -o ${out}; bye`;
    const l = await lab.exec('cli', ['lftp', '-u', 'anonymous,lab@', '-e', script, `ftp://${SRV}:${PORT}`], { reject: false, timeout: 90_000 });
    expect(l.exitCode, `${l.stderr}\n${proxy!.log.split('\n').slice(-30).join('\n')}`).toBe(0);
    expect((await lab.exec('cli', ['sha256sum', out])).stdout.split(' ')[0]).toBe(lab.sha256('test20M.bin'));
  });

  it('the log names both legs\' TLS and the relay', () => {
    const log = proxy!.log;
    expect(log).toMatch(/server TLS: TLSv1\.[23] /);
    expect(log).toMatch(/client TLS: TLSv1\.[23] /);
    expect(log).toMatch(/\(TLS relay\)/);
  });

  it('ftp-proxy status during a PROT P transfer: both legs TLS, data through the TLS relay', async () => {
    const out = `${lab.runDir}/dl/slow`;
    const c = lab.spawn('cli', ['curl', '-sS', '--ssl-reqd', '--limit-rate', '4M', '--cacert', pki.caCert, '-o', out, `ftp://anonymous:lab%40@${SRV}:${PORT}/test20M.bin`]);
    try {
      const n = (proxy!.log.match(/\(TLS relay\)/g) ?? []).length;
      for (let i = 0; i < 100 && (proxy!.log.match(/\(TLS relay\)/g) ?? []).length === n; i++) await new Promise((r) => setTimeout(r, 50));
      const r = await lab.exec('fw', [process.execPath, CLI, 'status'], { reject: false, timeout: 20_000 });
      expect(r.stdout).toMatch(/session \d+: 192\.168\.1\.10 -> 198\.51\.100\.21, TLS client and server legs, data through the TLS relay \(PROT P\)/);
      const j = await lab.exec('fw', [process.execPath, CLI, 'status', '--json'], { reject: false, timeout: 20_000 });
      const st = JSON.parse(j.stdout) as { instances: { sessions?: unknown[] }[] }[];
      expect(st[0]!.instances.flatMap((i) => i.sessions ?? [])).toContainEqual(expect.objectContaining({ client: '192.168.1.10', tls: { client: true, server: true }, data: 'relay' }));
    } finally {
      c.kill('SIGKILL');
    }
  });

  it('PROT C (curl --ftp-ssl-control): the data goes through the kernel pinhole, not the relay', async () => {
    const before = (proxy!.log.match(/\(TLS relay\)/g) ?? []).length;
    const r = await curl(['--ftp-ssl-control'], 'test20M.bin');
    expect(r.stderr, proxy!.log.split('\n').slice(-40).join('\n')).toBe('');
    expect(r.sum).toBe(lab.sha256('test20M.bin'));
    expect((proxy!.log.match(/\(TLS relay\)/g) ?? []).length).toBe(before);
    expect(proxy!.log).toMatch(/passive: client to server port \d+ via port \d+$/m);
  });

  it('CCC (curl --ftp-ssl-ccc): the client leg returns to plain text and the transfer works', async () => {
    const r = await curl(['--ftp-ssl-control', '--ftp-ssl-ccc', '--ftp-ssl-ccc-mode', 'active'], 'small.txt');
    expect(r.stderr, proxy!.log.split('\n').slice(-40).join('\n')).toBe('');
    expect(r.sum).toBe(lab.sha256('small.txt'));
    expect(proxy!.log).toMatch(/clears the control channel \(CCC\)/);
  });

  it('CCC with the client\'s close_notify arriving on its own (Python unwrap, then a pause): the session goes on in plain text', async () => {
    const py = [
      'import socket, ssl, sys, time',
      `ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.caCert)})`,
      `raw = socket.create_connection((${JSON.stringify(SRV)}, ${PORT}), timeout=20)`,
      'f = raw.makefile("rb")',
      'def reply(r):',
      '    line = r.readline().decode()',
      '    while line[3:4] == "-": line = r.readline().decode()',
      '    return line.strip()',
      'reply(f); raw.sendall(b"AUTH TLS\\r\\n"); print(reply(f))',
      `s = ctx.wrap_socket(raw, server_hostname=${JSON.stringify(SRV)})`,
      'g = s.makefile("rb")',
      'for c in (b"USER anonymous", b"PASS lab@", b"CCC"):',
      '    s.sendall(c + b"\\r\\n"); print(reply(g))',
      'plain = s.unwrap()',
      'time.sleep(0.5)  # the close_notify reaches the proxy alone, before any plain byte',
      'plain.sendall(b"PWD\\r\\n"); h = plain.makefile("rb"); print(reply(h))',
      'plain.sendall(b"QUIT\\r\\n"); print(reply(h))',
    ].join('\n');
    const r = await lab.exec('cli', ['python3', '-c', py], { reject: false, timeout: 60_000 });
    expect(r.stdout.split('\n').map((l) => l.slice(0, 3)), `${r.stdout}${r.stderr}\n${proxy!.log.split('\n').slice(-20).join('\n')}`).toEqual(['234', '331', '230', '200', '257', '221']);
  });

  it('garbage instead of a ClientHello ends that session, and the daemon serves the next one', async () => {
    await proxy!.waitFor(/./);
    const r = await lab.exec('cli', ['bash', '-c', `exec 3<>/dev/tcp/${SRV}/${PORT}; head -c 200 <&3 >/dev/null & printf 'AUTH TLS\\r\\n' >&3; sleep 0.5; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; sleep 1; exit 0`], { reject: false, timeout: 20_000 });
    expect(r.exitCode).toBe(0);
    await proxy!.waitFor(/client .*TLS handshake failed/, 20_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${r.stdout}${r.stderr}`);
    });
    const again = await curl(['--ssl-reqd'], 'small.txt');
    expect(again.sum).toBe(lab.sha256('small.txt'));
  });
});

describe('policy: tls_client require, and a server certificate that fails verification', () => {
  it('tls_client require: a plain USER gets 530', async () => {
    await startProxy(forwardPolicy().replace('tls_client accept', 'tls_client require'));
    const r = await lab.exec('cli', ['bash', '-c', `exec 3<>/dev/tcp/${SRV}/${PORT}; timeout 5 head -n 1 <&3; printf 'USER anonymous\\r\\n' >&3; timeout 5 head -n 1 <&3`], { reject: false, timeout: 20_000 });
    expect(r.stdout).toMatch(/^530 .*AUTH TLS/m);
  });

  it('a server certificate the policy does not trust: the client gets a 421 naming the reason', async () => {
    await startProxy(forwardPolicy().replace(/tls_server_ca .*\n/, ''));
    // curl -v shows the reply (curl reports any 421 as "(28) Timeout was reached").
    const r = await curl(['--ssl-reqd', '-v'], 'small.txt');
    expect(r.code).not.toBe(0);
    expect(r.stderr, proxy!.log.split('\n').slice(-30).join('\n')).toMatch(/< 421 TLS with the server failed: .*UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
    expect(proxy!.log).toMatch(/TLS .*server failed: .*(UNABLE_TO_VERIFY|SELF_SIGNED|unable to get)/i);
  });
});

describe('one-sided set-ups, implicit FTPS and passthrough', () => {
  it('TLS client, plain server (tls_server none, a configured certificate): PBSZ/PROT answered by the proxy, PROT P relayed with TLS on the client leg only', async () => {
    await startProxy([`tls_client accept`, `tls_server none`, `tls_certificate "${proxyCert.cert}"`, `tls_key "${proxyCert.key}"`, ''].join('\n'));
    const r = await curl(['--ssl-reqd'], 'test20M.bin', `ftp://anonymous:lab%40@${SRV}:${PLAIN_PORT}`);
    expect(r.stderr, proxy!.log.split('\n').slice(-30).join('\n')).toBe('');
    expect(r.sum).toBe(lab.sha256('test20M.bin'));
    expect(proxy!.log).toMatch(/client TLS: TLSv1\.3/);
    expect(proxy!.log).not.toMatch(/server TLS:/);
    expect(proxy!.log).toMatch(/\(TLS relay\)/);
  });

  it('plain client, TLS server (tls_server require): the proxy logs in to the server over TLS, PROT P on the server leg', async () => {
    await startProxy([`tls_server require`, `tls_server_ca "${pki.caCert}"`, ''].join('\n'));
    const r = await curl([], 'test20M.bin');
    expect(r.stderr, proxy!.log.split('\n').slice(-30).join('\n')).toBe('');
    expect(r.sum).toBe(lab.sha256('test20M.bin'));
    expect(proxy!.log).toMatch(/server TLS: TLSv1\.3/);
    expect(proxy!.log).not.toMatch(/client TLS:/);
    expect(proxy!.log).toMatch(/\(TLS relay\)/);
  });

  it('plain client, TLS server whose certificate does not name its address: 421 before any login goes out', async () => {
    await startProxy([`tls_server require`, `tls_server_ca "${pki.caCert}"`, ''].join('\n'));
    const r = await curl(['-v'], 'small.txt', `ftp://anonymous:lab%40@${SRV}:${NAMED_PORT}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr, proxy!.log.split('\n').slice(-30).join('\n')).toMatch(/< 421 The server's certificate failed verification: .*does not name 198\.51\.100\.21/);
    expect(proxy!.log).not.toMatch(/server: 331/);
  });

  it('implicit FTPS on port 990 (curl ftps://): TLS on both legs from the first byte', async () => {
    await startProxy(forwardPolicy());
    const r = await curl([], 'test20M.bin', `ftps://anonymous:lab%40@${SRV}:${IMPLICIT_PORT}`);
    expect(r.stderr, proxy!.log.split('\n').slice(-30).join('\n')).toBe('');
    expect(r.sum).toBe(lab.sha256('test20M.bin'));
    expect(proxy!.log).toMatch(/server TLS: TLSv1\.3/);
    expect(proxy!.log).toMatch(/client TLS: TLSv1\.3/);
  });

  it('passthrough, with privilege separation (--user nobody): the server\'s own TLS end to end, one range pinhole for the session, gone after it', async () => {
    // The privileged process applies the range only because its own reading of the policy names it.
    // --login-timeout 1: the login happens under TLS, out of the proxy's sight; it must not end the session.
    await startProxy(['tls_client passthrough', 'tls_passthrough_ports 52000-52099', ''].join('\n'), ['--user', 'nobody', '--login-timeout', '1']);
    const r = await curl(['--ssl-reqd', '--limit-rate', '8M'], 'test20M.bin');
    expect(r.stderr, proxy!.log.split('\n').slice(-30).join('\n')).toBe('');
    expect(r.sum).toBe(lab.sha256('test20M.bin'));
    expect(proxy!.log).toMatch(/network process \d+ runs with no capability/);
    expect(proxy!.log).toMatch(/TLS passed through: data ports 52000-52099/);
    expect(await lab.waitNoPinholeObjects('nftables')).toBe(0);
  });

  it('passthrough of implicit FTPS (port 990): blind from the first byte, the range pinhole at once', async () => {
    await startProxy(['tls_client passthrough', 'tls_passthrough_ports 52200-52299', ''].join('\n'));
    const r = await curl([], 'test20M.bin', `ftps://anonymous:lab%40@${SRV}:${IMPLICIT_PORT}`);
    expect(r.stderr, proxy!.log.split('\n').slice(-30).join('\n')).toBe('');
    expect(r.sum).toBe(lab.sha256('test20M.bin'));
    expect(proxy!.log).toMatch(/implicit FTPS passed through: data ports 52200-52299/);
    expect(await lab.waitNoPinholeObjects('nftables')).toBe(0);
  });
});
