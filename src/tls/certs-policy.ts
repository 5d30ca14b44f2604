// What the tls_* keys of a policy give the sessions at run time: the context the proxy presents to clients
// (tls_certificate/tls_key), forward mode's minter (tls_ca_certificate/tls_ca_key), and how to check
// servers (tls_server_verify, tls_server_ca). Built at start-up and on SIGUSR1, for the sessions that
// start after it; --check-config has already read the same files (src/tls/keys-policy.ts).
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { TlsPolicy } from '../policy/tls.js';
import { CertMinter } from './certs.js';
import { loadCa, loadCaBundle, loadIdentity, type ReadFile } from './keys.js';

export interface TlsMaterial {
  /** tls_certificate and tls_key: reverse mode's certificate, or forward mode's without a CA. */
  identity: { context: SecureContext; chainPem: string; keyPem: string } | null;
  /** tls_ca_certificate and tls_ca_key: a certificate per server, forward mode. */
  minter: CertMinter | null;
  /** Check the server's certificate... */
  serverVerify: boolean;
  /** ...against these (tls.connect's `ca`), or the system's when null. */
  serverCa: string[] | null;
}

export interface MaterialOptions {
  /** Merged into every context for clients (protocol versions, ciphers, ticket keys). */
  contextOptions?: SecureContextOptions;
  /** Passed to the minter: how many minted certificates to keep. */
  cacheSize?: number;
  read?: ReadFile;
}

/** Throws TlsFileError (file and reason) when a file cannot be used. */
export function loadTlsMaterial(tls: TlsPolicy, o: MaterialOptions = {}): TlsMaterial {
  let identity: TlsMaterial['identity'] = null;
  if (tls.certificate && tls.key) {
    const id = loadIdentity(tls.certificate, tls.key, o.read);
    const chainPem = id.cert.pem.map((p) => `${p}\n`).join('');
    identity = { context: createSecureContext({ ...o.contextOptions, key: id.key.pem, cert: chainPem }), chainPem, keyPem: id.key.pem };
  }
  const minter =
    tls.caCertificate && tls.caKey
      ? new CertMinter(loadCa(tls.caCertificate, tls.caKey, o.read), {
          ...(o.contextOptions ? { contextOptions: o.contextOptions } : {}),
          ...(o.cacheSize ? { cacheSize: o.cacheSize } : {}),
        })
      : null;
  const serverCa = tls.serverCa ? loadCaBundle(tls.serverCa, o.read).pem : null;
  return { identity, minter, serverVerify: tls.serverVerify, serverCa };
}
