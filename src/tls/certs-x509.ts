// @peculiar/x509 on Node's WebCrypto, ready to use. Its dependency tsyringe needs a Reflect polyfill
// loaded first (the library's README says so); importing @peculiar/x509 only through this module keeps
// that order. Loaded lazily (only the TLS code imports it), so a daemon without TLS never pays for it.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// The library types WebCrypto with the DOM's Crypto, which this project does not load: the same object.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
export const subtle = webcrypto.subtle;
