// The proxy port of a pinhole is random (49152-65534). One that another pinhole already holds makes the
// firewall throw PinholeConflict; the next random port is tried, a few times.
import { PinholeConflict, randomProxyPort } from '../firewall/backend.js';

/** Attempts at a free proxy port before a negotiation is refused. */
export const PORT_ATTEMPTS = 8;

/**
 * `install(pp)` with fresh random proxy ports until one is free. Any other error is thrown at once;
 * after PORT_ATTEMPTS conflicts, an error that says so.
 */
export async function withFreeProxyPort<T>(install: (pp: number) => Promise<T>, random?: () => number): Promise<T> {
  let last = '';
  for (let i = 0; i < PORT_ATTEMPTS; i++) {
    try {
      return await install(randomProxyPort(random));
    } catch (e) {
      if (!(e instanceof PinholeConflict)) throw e;
      last = e.message;
    }
  }
  throw new Error(`no free proxy port after ${PORT_ATTEMPTS} attempts (${last})`);
}
