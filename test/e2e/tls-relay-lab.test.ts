// Both TLS legs and the relay together, with real clients and a strict real server, before they are
// integrated into Session: test/helpers/ftps-mini-proxy.mjs (ClientLeg + ServerLeg + relay from dist/,
// test code, not the proxy) runs in the lab's firewall namespace between curl, lftp or Python's ftplib
// in the client namespace and vsftpd (require_ssl_reuse=YES) in the server namespace. PROT P, 20 MiB by
// sha256, TLS 1.2 and 1.3; each data relay reports whether each leg resumed.
import { type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, ROOT, requireLab } from './lab.js';
import { type FtpsServer, makeLabPki, requireTlsLab, startVsftpd, type LabPki } from '../helpers/tls-lab.js';

const MINI = `${ROOT}test/helpers/ftps-mini-proxy.mjs`;
const PY = `${ROOT}test/helpers/ftps-client.py`;
const SRV = '198.51.100.21';
const FW = '192.168.1.1';

interface DataLine {
  clientReused?: boolean;
  serverReused?: boolean;
  clientVersion?: string;
  serverVersion?: string;
  toClient?: number;
  toServer?: number;
  error?: string;
}

let lab: Lab;
let pki: LabPki;
let vsftpd: FtpsServer;
let proxyCert: { cert: string; key: string };
const minis: ChildProcess[] = [];

/** Start the mini relay on `port`; returns the data lines it prints. */
async function mini(port: number, version: 'TLSv1.2' | 'TLSv1.3'): Promise<DataLine[]> {
  const c = lab.spawn('fw', [process.execPath, MINI, JSON.stringify({ listen: FW, port, server: SRV, serverPort: 2121, ...proxyCert, caFile: pki.caCert, minVersion: version, maxVersion: version })]);
  minis.push(c);
  const data: DataLine[] = [];
  let buf = '';
  let ready!: () => void;
  const listening = new Promise<void>((r) => (ready = r));
  c.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const o = JSON.parse(buf.slice(0, nl)) as { listening?: number; data?: DataLine; error?: string };
      buf = buf.slice(nl + 1);
      if (o.listening) ready();
      if (o.data) data.push(o.data);
      if (o.error) data.push({ error: o.error });
    }
  });
  let err = '';
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error(`mini proxy did not start: ${err}`)), 10_000))]);
  return data;
}

/** The data lines come after the client's transfer; wait for n of them. */
async function lines(data: DataLine[], n: number): Promise<DataLine[]> {
  for (let i = 0; i < 100 && data.length < n; i++) await new Promise((r) => setTimeout(r, 50));
  return data;
}

beforeAll(async () => {
  await requireLab();
  await requireTlsLab(['vsftpd', 'openssl', 'python3', 'curl']);
  lab = await Lab.up('forward');
  pki = await makeLabPki(`${lab.runDir}/pki`);
  const { cert, key } = await pki.issue('vsftpd', ['ftp.lab', SRV]);
  proxyCert = await pki.issue('proxy', [FW]);
  vsftpd = await startVsftpd({ ns: lab.srv, dir: lab.runDir, address: SRV, root: `${lab.runDir}/data`, cert, key, port: 2121, pasv: [52000, 52099] });
});

afterAll(async () => {
  for (const c of minis) if (c.exitCode === null) c.kill('SIGKILL');
  await vsftpd?.stop().catch(() => undefined);
  await lab?.down();
});

describe('ClientLeg + ServerLeg + relay between real clients and vsftpd (require_ssl_reuse=YES)', () => {
  let port = 2100;
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`curl --ssl-reqd, ${version}: 20 MiB through the relay, the server leg resumed`, async () => {
      const data = await mini(++port, version);
      const out = `${lab.runDir}/dl/curl-${version}`;
      const r = await lab.exec('cli', ['curl', '-sS', '--ssl-reqd', '--cacert', pki.caCert, '--max-time', '60', '-o', out, `ftp://anonymous:lab%40@${FW}:${port}/test20M.bin`], { reject: false });
      expect(r.stderr).toBe('');
      const sum = (await lab.exec('cli', ['sha256sum', out])).stdout.split(' ')[0];
      expect(sum).toBe(lab.sha256('test20M.bin'));
      const [d] = await lines(data, 1);
      expect(d).toMatchObject({ clientReused: true, serverReused: true, clientVersion: version, serverVersion: version, toClient: 20 * 1024 * 1024, toServer: 0 });
      expect(d!.error).toBeUndefined();
    });

    it(`lftp and Python (stock ftplib, and with session=), ${version}: every server-leg data connection resumed`, async () => {
      const data = await mini(++port, version);
      const script = `set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:ca-file ${pki.caCert}; set net:max-retries 1; set cmd:fail-exit yes; get small.txt -o ${lab.runDir}/dl/lftp-${version}; bye`;
      const l = await lab.exec('cli', ['lftp', '-u', 'anonymous,lab@', '-e', script, `ftp://${FW}:${port}`], { reject: false, timeout: 60_000 });
      expect(l.exitCode, l.stderr).toBe(0);
      const v = version === 'TLSv1.2' ? '1.2' : '1.3';
      // Stock ftplib cannot talk to vsftpd directly (522); through the relay the server leg resumes for it.
      // Six small files: under TLS 1.3 each is a full client-leg handshake whose tickets must not arrive
      // with the file and its close_notify (ClientLeg's ticketSettleMs; without it a quarter fail).
      const runs = { stock: 6, session: 1 };
      for (const [how, n] of Object.entries(runs)) {
        const p = await lab.exec('cli', ['python3', PY, JSON.stringify({ host: FW, port, cafile: pki.caCert, version: v, reuse: how, files: Array<string>(n).fill('small.txt') })], { reject: false, timeout: 60_000 });
        const o = JSON.parse(p.stdout.trim().split('\n').at(-1) ?? '{}') as { error?: string; transfers: { sha256: string; reply: string }[] };
        expect(o.error, `${how}: ${p.stdout}`).toBeUndefined();
        expect(o.transfers.map((t) => [t.sha256, t.reply.slice(0, 3)]), how).toEqual(Array(n).fill([lab.sha256('small.txt'), '226']));
      }
      const got = await lines(data, 8);
      expect(got.map((d) => [d.serverReused, d.clientReused])).toEqual([
        [true, true], // lftp
        ...Array(6).fill([true, false]), // stock ftplib: no session offered to the client leg, which does not demand it
        [true, true], // ftplib with session=
      ]);
    });
  }
});
