// Reading the certificate and key files the policy names (tls_certificate, tls_key, tls_ca_certificate,
// tls_ca_key, tls_server_ca). Synchronous on purpose: they are read at start-up, by --check-config and
// on SIGUSR1, never per session. Every failure names the file and the reason.
import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';

/** A certificate or key file that cannot be used: `file: reason`. */
export class TlsFileError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'TlsFileError';
  }
}

export type ReadFile = (file: string) => string;
const readUtf8: ReadFile = (f) => readFileSync(f, 'utf8');

/**
 * A private key file that every user of the host may read (or write) is refused, as sshd refuses such
 * host keys: mode 0600 or 0640 (a group such as ssl-cert), never o+r. The mode is the open file's.
 */
const readKeyFile: ReadFile = (f) => {
  const fd = openSync(f, 'r');
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if (mode & 0o007) throw new TlsFileError(f, `the private key is open to every user (mode 0${mode.toString(8)}); chmod o-rwx ${f}`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
};

function readText(file: string, read: ReadFile): string {
  try {
    return read(file);
  } catch (e) {
    if (e instanceof TlsFileError) throw e;
    const err = e as NodeJS.ErrnoException;
    // Under privilege separation the files are read by the daemon's own (unprivileged) user.
    const who = err.code === 'EACCES' && process.getuid && process.getuid() !== 0 ? `; the daemon reads it as uid ${process.getuid()}: give that user's group read access (chmod 0640)` : '';
    throw new TlsFileError(file, `cannot read it (${err.code ?? err.message}${who})`);
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The first line of an OpenSSL error, without Node's "error:1E08010C:DECODER routines::" prefix. */
const reasonOf = (e: unknown): string => {
  const m = (e as Error).message ?? String(e);
  return m.replace(/^error:[0-9A-F]+:[^:]*:[^:]*:/i, '').split('\n')[0]!;
};

export interface CertificateFile {
  file: string;
  /** Every certificate of the file in order, as PEM (the first is the leaf of a chain). */
  pem: string[];
  certs: X509Certificate[];
}

/** A PEM file of one or more certificates (a certificate with its chain, or a bundle of CAs). */
export function readCertificates(file: string, read: ReadFile = readUtf8, now: Date | null = new Date()): CertificateFile {
  const text = readText(file, read);
  const pem = text.match(PEM_CERT) ?? [];
  if (!pem.length) {
    const hint = /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text) ? ' (it holds a private key: is it the key file?)' : '';
    throw new TlsFileError(file, `no PEM certificate (-----BEGIN CERTIFICATE-----) in it${hint}`);
  }
  const certs = pem.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch (e) {
      throw new TlsFileError(file, `certificate ${i + 1} is not a valid X.509 certificate (${reasonOf(e)})`);
    }
  });
  const first = certs[0]!;
  if (!now) return { file, pem, certs };
  if (new Date(first.validTo) < now) throw new TlsFileError(file, `the certificate expired on ${first.validTo} (${first.subject.replace(/\n/g, ', ')})`);
  if (new Date(first.validFrom) > now) throw new TlsFileError(file, `the certificate is not valid before ${first.validFrom}`);
  return { file, pem, certs };
}

export interface KeyFile {
  file: string;
  pem: string;
  key: KeyObject;
}

/** A PEM private key, unencrypted (a daemon has nobody to ask for a passphrase). */
export function readPrivateKey(file: string, read: ReadFile = readKeyFile): KeyFile {
  const text = readText(file, read);
  const m = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]*?-----END \1-----/.exec(text);
  if (!m) {
    const hint = /-----BEGIN CERTIFICATE-----/.test(text) ? ' (it holds a certificate: is it the certificate file?)' : '';
    throw new TlsFileError(file, `no PEM private key (-----BEGIN PRIVATE KEY-----) in it${hint}`);
  }
  if (m[1] === 'ENCRYPTED PRIVATE KEY' || /Proc-Type: 4,ENCRYPTED/.test(m[0])) {
    throw new TlsFileError(file, 'the private key is encrypted; give an unencrypted key (mode 0600), the daemon cannot ask for a passphrase');
  }
  try {
    return { file, pem: m[0], key: createPrivateKey(m[0]) };
  } catch (e) {
    throw new TlsFileError(file, `not a valid private key (${reasonOf(e)})`);
  }
}

const spki = (k: KeyObject): Buffer => (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });

/** Throws when `key` is not the private key of `cert`. */
export function checkPair(cert: CertificateFile, key: KeyFile): void {
  if (!spki(key.key).equals(spki(cert.certs[0]!.publicKey))) {
    throw new TlsFileError(key.file, `the private key does not belong to the certificate in ${cert.file}`);
  }
}

/** What the proxy presents to clients: tls_certificate and tls_key. */
export interface Identity {
  cert: CertificateFile;
  key: KeyFile;
}

export function loadIdentity(certFile: string, keyFile: string, read?: ReadFile): Identity {
  const cert = readCertificates(certFile, read);
  const key = readPrivateKey(keyFile, read);
  checkPair(cert, key);
  return { cert, key };
}

/** The CA that signs minted certificates: tls_ca_certificate and tls_ca_key. */
export function loadCa(certFile: string, keyFile: string, read?: ReadFile): Identity {
  const cert = readCaCertificate(certFile, read);
  const key = readCaKey(keyFile, read);
  checkPair(cert, key);
  return { cert, key };
}

/** A certificate that may sign others (basicConstraints CA:TRUE). */
export function readCaCertificate(file: string, read?: ReadFile): CertificateFile {
  const cert = readCertificates(file, read);
  const c = cert.certs[0]!;
  if (!c.ca) throw new TlsFileError(file, `not a CA certificate (basicConstraints CA:TRUE is missing): ${c.subject.replace(/\n/g, ', ')}`);
  return cert;
}

/** A private key of a type the minter can sign with. */
export function readCaKey(file: string, read?: ReadFile): KeyFile {
  const key = readPrivateKey(file, read);
  signingAlgorithm(key);
  return key;
}

/** How to sign with a CA key, in WebCrypto's terms (import and sign); ECDSA hashes as large as its curve. */
export type SigningAlgorithm =
  | { name: 'RSASSA-PKCS1-v1_5'; hash: 'SHA-256' }
  | { name: 'ECDSA'; namedCurve: 'P-256' | 'P-384' | 'P-521'; hash: 'SHA-256' | 'SHA-384' | 'SHA-512' };

const CURVES: Record<string, SigningAlgorithm> = {
  prime256v1: { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
  secp384r1: { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' },
  secp521r1: { name: 'ECDSA', namedCurve: 'P-521', hash: 'SHA-512' },
};

/** The algorithm to sign with this CA key (the ones @peculiar/x509 and every TLS client handle). */
export function signingAlgorithm(key: KeyFile): SigningAlgorithm {
  const k = key.key;
  if (k.asymmetricKeyType === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  if (k.asymmetricKeyType === 'ec') {
    const curve = k.asymmetricKeyDetails?.namedCurve ?? '';
    const alg = CURVES[curve];
    if (alg) return alg;
    throw new TlsFileError(key.file, `unsupported EC curve ${curve} for a CA key (use P-256, P-384 or P-521)`);
  }
  throw new TlsFileError(key.file, `unsupported key type ${k.asymmetricKeyType} for a CA key (use EC P-256, P-384, P-521 or RSA)`);
}

/** A bundle of CAs to verify servers with (tls_server_ca); an expired one among them is not our business. */
export function loadCaBundle(file: string, read?: ReadFile): CertificateFile {
  return readCertificates(file, read, null);
}
