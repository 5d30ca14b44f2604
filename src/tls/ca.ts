// `ftp-proxy ca create DIR`: a new CA for minting per-server certificates in forward mode (tls_ca_certificate,
// tls_ca_key). ECDSA P-256: small, fast to sign with, accepted by every current TLS client.
import { X509Certificate } from 'node:crypto';
import { closeSync, constants, existsSync, fchmodSync, mkdirSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { subtle, x509 } from './certs-x509.js';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';
/** Ten years: a CA deployed to every client is not something to roll often. */
const CA_YEARS = 10;

export interface CreatedCa {
  dir: string;
  certFile: string;
  keyFile: string;
  subject: string;
  /** SHA-256 of the certificate, colon-separated upper-case hex, as clients display it. */
  fingerprint: string;
  notAfter: string;
}

/** The CA already exists, or the directory cannot take it: nothing was written. */
export class CaCreateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CaCreateError';
  }
}

/**
 * Write DIR/ca.key (mode 0600) and DIR/ca.crt (mode 0644). Refuses when either file exists: replacing a
 * deployed CA silently would break every client that trusts the old one. DIR is created (mode 0700) if
 * missing.
 */
export async function createCa(dirArg: string, now = new Date(), name = `ftp-proxy CA ${hostname()}`): Promise<CreatedCa> {
  const dir = resolve(dirArg);
  const certFile = join(dir, CA_CERT_FILE);
  const keyFile = join(dir, CA_KEY_FILE);
  for (const f of [keyFile, certFile]) {
    if (existsSync(f)) throw new CaCreateError(`${f} exists; refusing to overwrite a CA (remove it first if you really mean to replace it)`);
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new CaCreateError(`cannot create ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }

  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await subtle.generateKey(alg, true, ['sign', 'verify']);
  const notBefore = new Date(now.getTime() - 3600_000); // an hour back: clients whose clock is a little slow
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_YEARS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: new x509.Name([{ CN: [name] }, { O: ['ftp-proxy'] }]),
    notBefore,
    notAfter,
    signingAlgorithm: alg,
    keys,
    extensions: [
      // pathLen 0: it signs leaf certificates only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
  const certPem = `${cert.toString('pem')}\n`;

  // O_EXCL: a file that appeared since the check above is not overwritten either. The key goes first, so a
  // certificate never exists without its key.
  writeExclusive(keyFile, keyPem, 0o600);
  try {
    writeExclusive(certFile, certPem, 0o644);
  } catch (e) {
    unlinkSync(keyFile);
    throw e;
  }
  const c = new X509Certificate(certPem);
  return { dir, certFile, keyFile, subject: c.subject.replace(/\n/g, ', '), fingerprint: c.fingerprint256, notAfter: c.validTo };
}

/** Create `file` (never replacing one) with exactly `mode`, whatever the umask. */
function writeExclusive(file: string, data: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode & 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CaCreateError(code === 'EEXIST' ? `${file} exists; refusing to overwrite a CA` : `cannot create ${file}: ${code ?? (e as Error).message}`);
  }
  try {
    writeSync(fd, data);
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/** What `ca create` prints: where the files are, what goes into the policy, how clients learn to trust it. */
export function describeCreatedCa(ca: CreatedCa): string {
  return `ftp-proxy: new CA in ${ca.dir}
  certificate  ${ca.certFile}  (mode 0644: deploy this one to the clients)
  private key  ${ca.keyFile}  (mode 0600: it never leaves this host)
  subject      ${ca.subject}
  valid until  ${ca.notAfter}
  SHA-256      ${ca.fingerprint}

In the policy file (-f), for forward mode:
  tls_ca_certificate "${ca.certFile}"
  tls_ca_key "${ca.keyFile}"
The daemon reads the key as its own user (ftp-proxy, or --user): give it the directory and the key
(chown ftp-proxy ${ca.dir} ${ca.keyFile}); both stay private (0700, 0600).

Install the certificate (not the key) on every client as a trusted root CA, and compare the SHA-256
fingerprint shown there with the one above:
  Debian/Ubuntu:  cp ${ca.certFile} /usr/local/share/ca-certificates/ftp-proxy-ca.crt
                  update-ca-certificates        (curl, lftp, Python then trust it)
  Windows:        certutil -addstore -f Root ca.crt   (as administrator; or Group Policy:
                  Public Key Policies, Trusted Root Certification Authorities)
  Clients with their own store (Firefox, Java, FileZilla) need it imported there as well.
`;
}
