// FTPS through the real daemon with the iptables backend (issue 12): the shipped forward DNAT ruleset for
// iptables-nft (and iptables-legacy where the machine has it) without "the LAN goes out", vsftpd
// (require_ssl_reuse=YES) in the server namespace, real clients verifying certificates minted from the
// proxy's CA. A few matrix rows with all of matrixRow's checks (sha256, TLS version, PROT C in the kernel
// and PROT P through the relay by conntrack, no session chain left), and passthrough's range pinhole as
// iptables holds it: present during the session, gone after.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ProxyProcess, ROOT } from './lab.js';
import { type FtpsLab, ftpsLabUp, heldPassthrough, matrixRow, mintPolicy, PASSTHROUGH_POLICY, passthroughRange, requireFtpsLab, type Row, writePolicy } from '../helpers/ftps-lab.js';

const CLIENT = '192.168.1.10';
const VS = '198.51.100.22';
const PASS = '198.51.100.26';

const VARIANTS = ['iptables-nft', ...(existsSync('/usr/sbin/iptables-legacy') ? ['iptables-legacy'] : [])];

beforeAll(async () => {
  await requireFtpsLab(['vsftpd', 'openssl', 'python3', 'curl']);
});

describe.each(VARIANTS)('%s', (variant) => {
  let f: FtpsLab;
  const passRange = passthroughRange();
  const env = { FTP_PROXY_IPTABLES: variant };

  beforeAll(async () => {
    f = await ftpsLabUp('forward', { ruleset: `${ROOT}iptables-examples/forward-redirect.rules`, addresses: [VS, PASS], iptables: variant });
    await f.vsftpd({ ...(await f.pki.issue('vsftpd', ['ftp.lab', VS])), dir: 'vs', address: VS, pasv: [52000, 52099] });
    await f.vsftpd({ ...(await f.pki.issue('pass', [PASS])), dir: 'vs-pass', address: PASS, pasv: passRange });
  });
  afterAll(async () => {
    await f?.down();
  });

  describe('minted certificates', () => {
    let proxy: ProxyProcess;
    beforeAll(async () => {
      proxy = await f.lab.proxy(['-D', '7', '--backend', 'iptables', '-f', writePolicy(f.lab, 'mint', mintPolicy(f))], env);
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
      await matrixRow(f.lab, proxy, r, { host: VS, server: VS, ports: [52000, 52099], client: CLIENT, ca: f.mint.caCert, sums: f.sums, backend: 'iptables' });
    });
  });

  describe('passthrough (the shipped policy)', () => {
    let proxy: ProxyProcess;
    beforeAll(async () => {
      proxy = await f.lab.proxy(['-D', '7', '--backend', 'iptables', '-f', PASSTHROUGH_POLICY], env);
    });
    afterAll(async () => {
      await proxy?.stop();
    });

    it('the range pinhole is in the ruleset during the session and gone after it', async () => {
      const range = new RegExp(`--dport ${passRange[0]}:${passRange[1]}\\b`);
      const saves = async (): Promise<string> => (await f.lab.iptablesSaves()).join('\n');
      expect(await saves()).not.toMatch(range);
      await heldPassthrough(f.lab, proxy, { host: PASS, ca: f.pki.caCert, mode: 'pasv', version: '1.3', sum: f.sums['test1M.bin']! }, async () => {
        const during = await saves();
        expect(during, during).toMatch(range);
      });
      expect(await f.lab.waitNoPinholeObjects('iptables')).toBe(0);
      expect(await saves()).not.toMatch(range);
    });
  });
});
