// Forward mode: the certificate the proxy shows a client is minted on the fly for the server it reaches,
// signed by the admin's CA (tls_ca_certificate, tls_ca_key). It mirrors the server certificate's subject
// and subject alternative names, and also names what the client asked for (its SNI) and the server's
// address, so that the client's own host name check passes exactly when it would against the server.
// The SNI name goes in whatever the server's certificate says: with tls_server_verify yes, the server leg
// must check the server's certificate against that same name, or the CA would vouch for any name.
//
// Signing is WebCrypto's (async, off the event loop); one ECDSA P-256 leaf key serves every minted
// certificate of this minter (a key pair per certificate would cost without protecting anything: they
// all live in this process). Minted certificates are cached by (server certificate, SNI, address).
import { randomBytes, type webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { vis } from '../ftp/vis.js';
import { MintCache } from './certs-cache.js';
import { subtle, x509 } from './certs-x509.js';
import { type Identity, type SigningAlgorithm, signingAlgorithm } from './keys.js';

export interface MintRequest {
  /** The server's certificate, DER (tls.TLSSocket#getPeerX509Certificate().raw). */
  serverCert: Buffer;
  /** The name the client sent in its ClientHello, if any. */
  sni?: string | undefined;
  /** The server's address (numeric), as the session reached it. */
  address: string;
}

export interface MintedCert {
  /** The leaf, PEM. */
  certPem: string;
  /** The leaf then the CA file's certificates: what the proxy sends (the CA may be an intermediate). */
  chainPem: string;
  keyPem: string;
  /** Ready for tls.createServer's SNICallback / TLSSocket options; one per entry, so TLS session
   * tickets issued with it resume on the data connections of the same server. */
  context: SecureContext;
  notAfter: Date;
  dns: string[];
  ip: string[];
}

export interface MinterOptions {
  /** Entries in the LRU (default 1000). */
  cacheSize?: number;
  /** Days a minted certificate is valid (default 30; never beyond the CA's own end). */
  validityDays?: number;
  /** Merged into every SecureContext (protocol versions, ciphers, ticket keys). */
  contextOptions?: SecureContextOptions;
  now?: () => Date;
}

/** The server certificate could not be read, or signing failed. */
export class MintError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MintError';
  }
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const DAY = 86400_000;
const LEAF_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** Numeric addresses in one spelling: IPv4-mapped IPv6 as IPv4, IPv6 compressed and lower case. */
export function normalizeIp(a: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (v4) return v4[1]!;
  if (isIP(a) === 6) return new URL(`http://[${a}]`).hostname.slice(1, -1);
  return a;
}

const HOSTNAME = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$/i;

interface Names {
  dns: string[];
  ip: string[];
  /** E-mail and URI names, mirrored as they were. */
  other: x509.JsonGeneralName[];
}

/** The SANs of the server certificate; Node's reading when @peculiar/x509 meets a name form it cannot parse. */
function serverNames(server: x509.X509Certificate, der: Buffer): Names {
  const out: Names = { dns: [], ip: [], other: [] };
  try {
    const ext = server.getExtension(x509.SubjectAlternativeNameExtension);
    for (const n of ext?.names.toJSON() ?? []) {
      if (n.type === 'dns') out.dns.push(n.value);
      else if (n.type === 'ip') out.ip.push(normalizeIp(n.value));
      // e-mail and URI names are mirrored too; other forms (directory names, otherName) say nothing to
      // a TLS client and could only make the signing fail
      else if (n.type === 'email' || n.type === 'url') out.other.push(n);
    }
  } catch {
    const alt = new X509Certificate(der).subjectAltName ?? '';
    for (const part of alt.split(', ')) {
      const m = /^(DNS|IP Address):(.+)$/.exec(part);
      if (m?.[1] === 'DNS' && HOSTNAME.test(m[2]!)) out.dns.push(m[2]!);
      else if (m?.[1] === 'IP Address' && isIP(m[2]!)) out.ip.push(normalizeIp(m[2]!));
    }
  }
  if (!out.dns.length && !out.ip.length) {
    // A certificate with only a common name: clients ignore CNs nowadays, so it becomes a SAN.
    for (const cn of server.subjectName.getField('CN')) if (HOSTNAME.test(cn)) out.dns.push(cn);
  }
  return out;
}

function addName(names: Names, name: string): void {
  if (isIP(name)) {
    const ip = normalizeIp(name);
    if (!names.ip.includes(ip)) names.ip.push(ip);
  } else if (HOSTNAME.test(name) && !names.dns.some((d) => d.toLowerCase() === name.toLowerCase())) {
    names.dns.push(name);
  }
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40; // positive, and no leading zero byte to strip
  return b.toString('hex');
}

const pemOf = (label: string, der: ArrayBuffer): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END ${label}-----\n`;

export class CertMinter {
  private readonly cache: MintCache<MintedCert>;
  private readonly alg: SigningAlgorithm;
  private readonly caCert: x509.X509Certificate;
  private readonly caChain: string;
  private caKey: Promise<CryptoKey> | null = null;
  private leafKey: Promise<{ pair: CryptoKeyPair; pem: string; ski: x509.SubjectKeyIdentifierExtension }> | null = null;
  private readonly now: () => Date;
  private readonly validity: number;

  constructor(
    private readonly ca: Identity,
    private readonly o: MinterOptions = {},
  ) {
    this.alg = signingAlgorithm(ca.key);
    this.caCert = new x509.X509Certificate(ca.cert.pem[0]!);
    this.caChain = ca.cert.pem.map((p) => `${p}\n`).join('');
    this.now = o.now ?? (() => new Date());
    this.validity = (o.validityDays ?? 30) * DAY;
    // Re-minted a day before it ends, so no client ever sees an expired one.
    this.cache = new MintCache(o.cacheSize ?? 1000, (m) => m.notAfter.getTime() - this.now().getTime() > DAY);
  }

  /** Minted so far / answered from the cache (or from a mint in flight). */
  get stats(): { minted: number; hits: number; cached: number } {
    return { minted: this.cache.made, hits: this.cache.hits, cached: this.cache.size };
  }

  /** The certificate for this server, as this client asked for it. Same object for the same key. */
  mint(req: MintRequest): Promise<MintedCert> {
    let fp: string;
    try {
      fp = new X509Certificate(req.serverCert).fingerprint256;
    } catch (e) {
      return Promise.reject(new MintError(`cannot read the server's certificate: ${(e as Error).message}`));
    }
    // The SNI is the client's: a name that cannot go into a certificate is left out of the key as well,
    // so junk names do not each cost a mint.
    const sni = req.sni && (isIP(req.sni) || (HOSTNAME.test(req.sni) && !req.sni.startsWith('*'))) ? req.sni.toLowerCase() : undefined;
    const key = `${fp}|${sni ?? ''}|${normalizeIp(req.address)}`;
    return this.cache.get(key, () => this.make({ ...req, sni }));
  }

  private signingKey(): Promise<CryptoKey> {
    this.caKey ??= subtle.importKey('pkcs8', this.ca.key.key.export({ type: 'pkcs8', format: 'der' }), this.alg, false, ['sign']);
    return this.caKey;
  }

  private leaf(): NonNullable<CertMinter['leafKey']> {
    this.leafKey ??= (async () => {
      const pair = await subtle.generateKey(LEAF_ALG, true, ['sign', 'verify']);
      const pem = pemOf('PRIVATE KEY', await subtle.exportKey('pkcs8', pair.privateKey));
      return { pair, pem, ski: await x509.SubjectKeyIdentifierExtension.create(pair.publicKey) };
    })();
    return this.leafKey;
  }

  private async make(req: MintRequest): Promise<MintedCert> {
    let server: x509.X509Certificate;
    try {
      server = new x509.X509Certificate(req.serverCert);
    } catch (e) {
      throw new MintError(`cannot read the server's certificate: ${(e as Error).message}`);
    }
    const names = serverNames(server, req.serverCert);
    if (req.sni) addName(names, req.sni);
    addName(names, req.address);

    const [signingKey, leaf] = await Promise.all([this.signingKey(), this.leaf()]);
    const now = this.now();
    const notAfter = new Date(Math.min(now.getTime() + this.validity, this.caCert.notAfter.getTime()));
    const caSki = this.caCert.getExtension(x509.SubjectKeyIdentifierExtension);
    const san: x509.JsonGeneralName[] = [
      ...names.dns.map((value) => ({ type: 'dns' as const, value })),
      ...names.ip.map((value) => ({ type: 'ip' as const, value })),
      ...names.other,
    ];
    const empty = server.subjectName.toJSON().length === 0;
    let cert: x509.X509Certificate;
    try {
      cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: server.subjectName,
        issuer: this.caCert.subjectName,
        notBefore: new Date(now.getTime() - 3600_000), // clients whose clock is a little slow
        notAfter,
        signingAlgorithm: this.alg,
        publicKey: leaf.pair.publicKey,
        signingKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          // RFC 5280 4.2.1.6: critical when the subject is empty.
          new x509.SubjectAlternativeNameExtension(san, empty),
          leaf.ski,
          ...(caSki ? [new x509.AuthorityKeyIdentifierExtension(caSki.keyId)] : []),
        ],
      });
    } catch (e) {
      throw new MintError(`cannot mint a certificate for ${req.sni ?? req.address}: ${vis((e as Error).message)}`);
    }
    const certPem = `${cert.toString('pem')}\n`;
    const chainPem = certPem + this.caChain;
    return {
      certPem,
      chainPem,
      keyPem: leaf.pem,
      context: createSecureContext({ ...this.o.contextOptions, key: leaf.pem, cert: chainPem }),
      notAfter,
      dns: names.dns,
      ip: names.ip,
    };
  }
}
