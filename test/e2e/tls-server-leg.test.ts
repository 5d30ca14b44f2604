// The proxy's TLS client code (src/tls/server-leg.ts) against real FTPS servers in the lab's server
// namespace: vsftpd with require_ssl_reuse=YES, explicit (AUTH TLS) and implicit (990); proftpd's
// mod_tls (TLSRequired on, reuse required by default); pure-ftpd (-Y 2). A small
// driver (test/helpers/ftps-driver.mjs, test code, not the proxy) logs in, PBSZ 0, PROT P, PASV, RETR
// a 20 MiB file through ServerLeg with resumption; sha256 checked. Without resumption vsftpd must
// answer 522: the proof that these tests can fail.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, ROOT, requireLab } from './lab.js';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ANON_USER, type FtpsServer, makeLabPki, requireTlsLab, startProftpdTls, startPureFtpd, startVsftpd, type LabPki } from '../helpers/tls-lab.js';

const DRIVER = `${ROOT}test/helpers/ftps-driver.mjs`;
const PY = `${ROOT}test/helpers/ftps-client.py`;
const SRV = '198.51.100.21';
const SRV6 = '2001:db8:2::21';

interface Transfer {
  file: string;
  upload?: boolean;
  reused: boolean;
  bytes: number;
  sha256: string;
  version?: string;
  reply: string;
  dataError?: string;
}
interface DriverOut {
  ok: boolean;
  error?: string;
  tickets?: number;
  control?: { version: string };
  transfers: Transfer[];
  replies: string[];
}

let lab: Lab;
let pki: LabPki;
const servers: FtpsServer[] = [];

async function drive(opts: Record<string, unknown>): Promise<DriverOut> {
  const r = await lab.exec('cli', [process.execPath, DRIVER, JSON.stringify({ host: SRV, caFile: pki.caCert, ...opts })], { reject: false, timeout: 120_000 });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as DriverOut;
  } catch {
    throw new Error(`ftps-driver: ${r.stdout} ${r.stderr}`);
  }
}

beforeAll(async () => {
  await requireLab();
  await requireTlsLab(['vsftpd', 'pure-ftpd', 'proftpd-tls', 'openssl', 'python3']);
  lab = await Lab.up('forward');
  pki = await makeLabPki(`${lab.runDir}/pki`);
  const { cert, key } = await pki.issue('vsftpd', ['ftp.lab', SRV, SRV6]);
  const common = { ns: lab.srv, dir: lab.runDir, address: SRV, root: `${lab.runDir}/data`, cert, key };
  // the anonymous upload directory: inside the read-only anon_root, owned by the anonymous user
  await execa('install', ['-d', '-o', ANON_USER, '-m', '0755', `${lab.runDir}/data/upload`]);
  servers.push(await startVsftpd({ ...common, port: 2121, pasv: [52000, 52099], uploads: true }));
  servers.push(await startVsftpd({ ...common, port: 990, implicit: true, pasv: [52100, 52199] }));
  servers.push(await startVsftpd({ ...common, address: SRV6, port: 2125, pasv: [52400, 52499] }));
  const named = { ns: lab.srv, dir: lab.runDir, address: SRV, cert, key };
  servers.push(await startProftpdTls({ ...named, port: 2122, passwd: `${lab.runDir}/ftpd.passwd`, pasv: [52200, 52299] }));
  servers.push(await startPureFtpd({ ...named, port: 2123, root: `${lab.runDir}/data`, pasv: [52300, 52399] }));
});

afterAll(async () => {
  for (const s of servers) await s.stop().catch(() => undefined);
  await lab?.down();
});

describe('server leg: vsftpd, require_ssl_reuse=YES', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    for (const [how, port, implicit] of [
      ['explicit', 2121, false],
      ['implicit', 990, true],
    ] as const) {
      it(`${how} FTPS, ${version}: RETR 20 MiB on a resumed data session, then a second transfer`, async () => {
        const out = await drive({ port, implicit, minVersion: version, maxVersion: version, files: ['test20M.bin', 'small.txt'] });
        expect(out.error, JSON.stringify(out)).toBeUndefined();
        expect(out.control?.version).toBe(version);
        expect(out.tickets).toBeGreaterThan(0);
        const [big, small] = out.transfers;
        expect(big).toMatchObject({ reused: true, version, bytes: 20 * 1024 * 1024, sha256: lab.sha256('test20M.bin') });
        expect(big!.reply).toMatch(/^226/);
        expect(small).toMatchObject({ reused: true, sha256: lab.sha256('small.txt') });
        expect(small!.reply).toMatch(/^226/);
      });
    }

    it(`active mode (PORT), ${version}: vsftpd connects, the proxy side is still the TLS client and resumes`, async () => {
      const out = await drive({ port: 2121, minVersion: version, maxVersion: version, active: true, localAddress: lab.clientAddress, files: ['test20M.bin'] });
      expect(out.error, JSON.stringify(out)).toBeUndefined();
      expect(out.transfers[0]).toMatchObject({ reused: true, version, sha256: lab.sha256('test20M.bin') });
      expect(out.transfers[0]!.reply).toMatch(/^226/);
    });

    it(`STOR 20 MiB, ${version}: the upload ends with close_notify and arrives whole`, async () => {
      const name = `up-${version}.bin`;
      const out = await drive({ port: 2121, minVersion: version, maxVersion: version, uploads: [[`upload/${name}`, `${lab.runDir}/data/test20M.bin`]] });
      expect(out.error, JSON.stringify(out)).toBeUndefined();
      expect(out.transfers[0]).toMatchObject({ upload: true, reused: true, bytes: 20 * 1024 * 1024 });
      expect(out.transfers[0]!.reply).toMatch(/^226/);
      expect(createHash('sha256').update(readFileSync(`${lab.runDir}/data/upload/${name}`)).digest('hex')).toBe(lab.sha256('test20M.bin'));
    });

    it(`${version}: a data connection that does not resume the control session gets 522`, async () => {
      const out = await drive({ port: 2121, minVersion: version, maxVersion: version, resume: false, files: ['small.txt'] });
      expect(out.transfers[0]).toMatchObject({ reused: false, bytes: 0 });
      expect(out.transfers[0]!.reply).toMatch(/^522 .*session reuse required/);
    });
  }

  it('IPv6 (EPSV), TLS 1.2 and 1.3: 20 MiB on a resumed data session, the IP SAN checked', async () => {
    for (const version of ['TLSv1.2', 'TLSv1.3']) {
      const out = await drive({ host: SRV6, port: 2125, epsv: true, minVersion: version, maxVersion: version, files: ['test20M.bin'] });
      expect(out.error, JSON.stringify(out)).toBeUndefined();
      expect(out.transfers[0]).toMatchObject({ reused: true, version, sha256: lab.sha256('test20M.bin') });
      expect(out.transfers[0]!.reply).toMatch(/^226/);
    }
  });

  it('TLS 1.3: vsftpd accepts any of its tickets, more than once, and the tickets of resumed data connections', async () => {
    for (const opts of [{ ticket: 0 }, { ticket: -1 }, { follow: true }]) {
      const out = await drive({ port: 2121, minVersion: 'TLSv1.3', ...opts, files: ['small.txt', 'small.txt', 'small.txt'] });
      expect(out.error, JSON.stringify(opts)).toBeUndefined();
      expect(out.transfers.map((t) => [t.reused, t.reply.slice(0, 3)]), JSON.stringify(opts)).toEqual([
        [true, '226'],
        [true, '226'],
        [true, '226'],
      ]);
    }
  });

  it('a server certificate the lab CA did not sign fails the control handshake with the reason', async () => {
    const other = await makeLabPki(`${lab.runDir}/pki-other`);
    const out = await drive({ port: 2121, caFile: other.caCert, files: [] });
    expect(out.ok).toBe(false);
    expect(out.error).toMatch(/server 198\.51\.100\.21 port 2121 \(control\): TLS handshake failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
  });

  it('a name the certificate does not carry fails the check', async () => {
    const out = await drive({ port: 2121, servername: 'not-ftp.lab', files: [] });
    expect(out.error).toMatch(/TLS handshake failed: ERR_TLS_CERT_ALTNAME_INVALID/);
  });
});

describe('server leg: proftpd mod_tls (TLSRequired on) and pure-ftpd (-Y 2)', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`proftpd, ${version}: 20 MiB on a resumed data session; without resumption 425, the session goes on`, async () => {
      const ok = await drive({ port: 2122, user: 'lab', pass: 'lab', minVersion: version, maxVersion: version, files: ['test20M.bin'] });
      expect(ok.error, JSON.stringify(ok)).toBeUndefined();
      expect(ok.transfers[0]).toMatchObject({ reused: true, version, sha256: lab.sha256('test20M.bin') });
      expect(ok.transfers[0]!.reply).toMatch(/^226/);
      const no = await drive({ port: 2122, user: 'lab', pass: 'lab', minVersion: version, maxVersion: version, resume: false, files: ['small.txt', 'small.txt'] });
      expect(no.transfers.map((t) => [t.reused, t.bytes, t.reply.slice(0, 3)])).toEqual([
        [false, 0, '425'],
        [false, 0, '425'],
      ]);
    });
  }

  it('pure-ftpd: resumes under TLS 1.2; under TLS 1.3 it sends no ticket, and it never demands resumption', async () => {
    const v12 = await drive({ port: 2123, user: 'lab', pass: 'lab', maxVersion: 'TLSv1.2', files: ['test20M.bin'] });
    expect(v12.error).toBeUndefined();
    expect(v12.transfers[0]).toMatchObject({ reused: true, sha256: lab.sha256('test20M.bin') });
    const v13 = await drive({ port: 2123, user: 'lab', pass: 'lab', minVersion: 'TLSv1.3', files: ['small.txt'] });
    expect(v13.tickets).toBe(0);
    expect(v13.transfers[0]).toMatchObject({ reused: false, sha256: lab.sha256('small.txt') });
    expect(v13.transfers[0]!.reply).toMatch(/^226/);
  });
});

describe('reference: Python ftplib.FTP_TLS against vsftpd', () => {
  const py = async (reuse: 'stock' | 'session', version: string) => {
    const r = await lab.exec('cli', ['python3', PY, JSON.stringify({ host: SRV, port: 2121, cafile: pki.caCert, version, reuse, files: ['small.txt'] })], { reject: false, timeout: 60_000 });
    return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { error?: string; transfers: { sha256: string; reply: string }[] };
  };
  it('stock FTP_TLS with prot_p() gets 522 (it never offers the control session); with session= it works', async () => {
    for (const version of ['1.2', '1.3']) {
      const stock = await py('stock', version);
      expect(stock.transfers[0]?.reply ?? stock.error, version).toMatch(/522 SSL connection failed: session reuse required/);
      const fixed = await py('session', version);
      expect(fixed.transfers[0], version).toMatchObject({ sha256: lab.sha256('small.txt'), reply: expect.stringMatching(/^226/) });
    }
  });
});
