// --check-config, start-up and SIGUSR1: the files the policy's tls_* keys name must load. Each problem
// goes on the line of the key whose file it is, naming the file and the reason.
import type { TlsFileCheck, TlsIssue, TlsKey } from '../policy/tls.js';
import { checkPair, loadCaBundle, type ReadFile, readCaCertificate, readCaKey, readCertificates, readPrivateKey, TlsFileError } from './keys.js';

export function tlsFileCheck(read?: ReadFile): TlsFileCheck {
  return (tls) => {
    const out: TlsIssue[] = [];
    /** Run one step; its failure goes on the line of `key`. */
    const step = <T>(key: TlsKey, load: () => T): T | null => {
      try {
        return load();
      } catch (e) {
        if (!(e instanceof TlsFileError)) throw e;
        out.push({ key, message: e.message });
        return null;
      }
    };
    // A lone half of a pair is still read; the missing other half is checkTls's message.
    const crt = tls.certificate ? step('tls_certificate', () => readCertificates(tls.certificate!, read)) : null;
    const key = tls.key ? step('tls_key', () => readPrivateKey(tls.key!, read)) : null;
    if (crt && key) step('tls_key', () => checkPair(crt, key));
    const caCrt = tls.caCertificate ? step('tls_ca_certificate', () => readCaCertificate(tls.caCertificate!, read)) : null;
    const caKey = tls.caKey ? step('tls_ca_key', () => readCaKey(tls.caKey!, read)) : null;
    if (caCrt && caKey) step('tls_ca_key', () => checkPair(caCrt, caKey));
    if (tls.serverCa) step('tls_server_ca', () => loadCaBundle(tls.serverCa!, read));
    return out;
  };
}
