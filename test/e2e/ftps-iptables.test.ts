// FTPS through the real daemon with the iptables backend (issue 12): the shipped forward DNAT ruleset for
// iptables-nft (and iptables-legacy where the machine has it) without "the LAN goes out", vsftpd
// (require_ssl_reuse=YES) in the server namespace, real clients verifying certificates minted from the
// proxy's CA. A few matrix rows with all of matrixRow's checks (sha256, TLS version, PROT C in the kernel
// and PROT P through the relay by conntrack, no session chain left), and passthrough's range pinhole as
// iptables holds it: present during the session, gone after.
import { type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type ProxyProcess, requireLab, ROOT } from './lab.js';
import { type FtpsServer, type LabPki, makeLabPki, requireTlsLab, startVsftpd } from '../helpers/tls-lab.js';
import { addMiB, conntrackReset, labRuleset, logTail, matrixRow, PY_CLIENT, requireFtpsTools, type Row, serverAddress, writePolicy } from '../helpers/ftps-lab.js';

const CLIENT = '192.168.1.10';
const VS = '198.51.100.22';
const PASS = '198.51.100.26';
const PASSTHROUGH_POLICY = `${ROOT}policy-examples/ftps-passthrough.policy`;

const VARIANTS = ['iptables-nft', ...(existsSync('/usr/sbin/iptables-legacy') ? ['iptables-legacy'] : [])];

beforeAll(async () => {
  await requireLab();
  await requireFtpsTools();
  await requireTlsLab(['vsftpd', 'openssl', 'python3', 'curl']);
});

describe.each(VARIANTS)('%s', (variant) => {
  let lab: Lab;
  let pki: LabPki;
  let mint: LabPki;
  let sums: Record<string, string>;
  let passRange: [number, number];
  const servers: FtpsServer[] = [];
  const env = { FTP_PROXY_IPTABLES: variant };

  beforeAll(async () => {
    lab = await Lab.up('forward');
    lab.iptables = variant;
    sums = { 'test1M.bin': addMiB(lab), 'test20M.bin': lab.sha256('test20M.bin') };
    await lab.sh('ftpd-restart', 'SocketBindTight on');
    for (const a of [VS, PASS]) await serverAddress(lab, a);
    await lab.loadRuleset(labRuleset(lab, `${ROOT}iptables-examples/forward-redirect.rules`, { implicit: false, closed: true }));
    await conntrackReset(lab);
    pki = await makeLabPki(`${lab.runDir}/pki`);
    mint = await makeLabPki(`${lab.runDir}/pki-mint`, 'ftp-proxy test proxy CA');
    const common = { ns: lab.srv, root: `${lab.runDir}/data`, forceDataSsl: false };
    servers.push(await startVsftpd({ ...common, ...(await pki.issue('vsftpd', ['ftp.lab', VS])), dir: `${lab.runDir}/vs`, address: VS, port: 21, pasv: [52000, 52099] }));
    const m = /^tls_passthrough_ports (\d+)-(\d+)$/m.exec(readFileSync(PASSTHROUGH_POLICY, 'utf8'));
    if (!m) throw new Error(`${PASSTHROUGH_POLICY}: no tls_passthrough_ports LOW-HIGH line`);
    passRange = [Number(m[1]), Number(m[2])];
    servers.push(await startVsftpd({ ...common, ...(await pki.issue('pass', [PASS])), dir: `${lab.runDir}/vs-pass`, address: PASS, port: 21, pasv: passRange }));
  });
  afterAll(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    await lab?.down();
  });

  describe('minted certificates', () => {
    let proxy: ProxyProcess;
    beforeAll(async () => {
      const policy = writePolicy(lab, 'mint', ['tls_client accept', 'tls_server forward', `tls_ca_certificate "${mint.caCert}"`, `tls_ca_key "${mint.caKey}"`, `tls_server_ca "${pki.caCert}"`]);
      proxy = await lab.proxy(['-D', '7', '--backend', 'iptables', '-f', policy], env);
    });
    afterAll(async () => {
      await proxy?.stop();
    });

    it.each([
      ['curl', 'pasv', 'P', '1.3', 'test20M.bin'],
      ['python', 'port', 'C', '1.2', 'test1M.bin'],
      ['lftp', 'epsv', 'C', '1.3', 'test1M.bin'],
      ['python', 'eprt', 'P', '1.2', 'test1M.bin'],
      ['lftp', 'port', 'P', '1.3', 'test1M.bin'],
    ] as Row[])('%s %s PROT %s TLS %s %s', async (...r) => {
      await matrixRow(lab, proxy, r, { host: VS, server: VS, ports: [52000, 52099], client: CLIENT, ca: mint.caCert, sums, backend: 'iptables' });
    });
  });

  describe('passthrough (the shipped policy)', () => {
    let proxy: ProxyProcess;
    const held: ChildProcess[] = [];
    beforeAll(async () => {
      proxy = await lab.proxy(['-D', '7', '--backend', 'iptables', '-f', PASSTHROUGH_POLICY], env);
    });
    afterAll(async () => {
      for (const c of held) if (c.exitCode === null) c.kill('SIGKILL');
      await proxy?.stop();
    });

    it('the range pinhole is in the ruleset during the session and gone after it', async () => {
      const range = new RegExp(`--dport ${passRange[0]}:${passRange[1]}\\b`);
      const saves = async (): Promise<string> => (await lab.iptablesSaves()).join('\n');
      expect(await saves()).not.toMatch(range);
      const c = lab.spawn('cli', ['python3', PY_CLIENT, JSON.stringify({ host: PASS, cafile: pki.caCert, mode: 'pasv', prot: 'P', version: '1.3', reuse: 'session', files: ['test1M.bin'], hold: 4 })]);
      held.push(c);
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      for (let i = 0; i < 200 && !out.includes('"ready"'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out, logTail(proxy)).toContain('"ready"');
      const during = await saves();
      expect(during, during).toMatch(range);
      await exited;
      const last = JSON.parse(out.trim().split('\n').at(-1)!) as { ok: boolean; transfers: { sha256: string }[] };
      expect(last.ok, `${out}\n${logTail(proxy)}`).toBe(true);
      expect(last.transfers[0]!.sha256).toBe(sums['test1M.bin']);
      expect(await lab.waitNoPinholeObjects('iptables')).toBe(0);
      expect(await saves()).not.toMatch(range);
    });
  });
});
