// Error texts as OpenBSD's err(3) prints them ("bind failed: Can't assign requested address"), not Node's
// error codes: admins search for these words, and OpenBSD's ftp-proxy prints them.
import { getSystemErrorMap } from 'node:util';

/** strerror(3) as on OpenBSD, for the errors start-up meets. */
const BSD: Record<string, string> = {
  EACCES: 'Permission denied',
  EADDRINUSE: 'Address already in use',
  EADDRNOTAVAIL: "Can't assign requested address",
  EAFNOSUPPORT: 'Address family not supported by protocol family',
  EINVAL: 'Invalid argument',
  ENOENT: 'No such file or directory',
  ENODEV: 'Operation not supported by device',
  ENOMEM: 'Cannot allocate memory',
  EMFILE: 'Too many open files',
  ENFILE: 'Too many open files in system',
  EPERM: 'Operation not permitted',
  EPROTONOSUPPORT: 'Protocol not supported',
  ENETUNREACH: 'Network is unreachable',
  EHOSTUNREACH: 'No route to host',
  ECONNREFUSED: 'Connection refused',
  ETIMEDOUT: 'Operation timed out',
};

/** gai_strerror(3) as on OpenBSD, for the resolver's failures (Node names them by code). */
const GAI: Record<string, string> = {
  ENOTFOUND: 'no address associated with name',
  EAI_NONAME: 'no address associated with name',
  EAI_AGAIN: 'temporary failure in name resolution',
  EAI_FAIL: 'non-recoverable failure in name resolution',
  EAI_FAMILY: 'ai_family not supported',
  EAI_NODATA: 'no address associated with name',
  ESERVFAIL: 'temporary failure in name resolution',
  ETIMEOUT: 'temporary failure in name resolution',
  ECONNREFUSED: 'temporary failure in name resolution',
};

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/** The text of a system error: OpenBSD's words where we know them, else the system's, never a bare code. */
export function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code && BSD[err.code]) return BSD[err.code]!;
  if (typeof err?.errno === 'number') {
    const known = getSystemErrorMap().get(err.errno);
    if (known) return capitalize(known[1]);
  }
  return err instanceof Error ? err.message : String(e);
}

/** The text of a resolver failure, as gai_strerror(3) words it. */
export function gaiText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code && GAI[err.code]) return GAI[err.code]!;
  return errnoText(e);
}
