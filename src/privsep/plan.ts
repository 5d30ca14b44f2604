// Whether the daemon splits itself in two (privilege separation), decided at start. Linux only: pf needs
// root for /dev/pf, and OpenBSD's own tools are not there to drop capabilities. The split needs a
// process that is not root (started as --user, as the dedicated user, or by systemd with
// CAP_NET_ADMIN): a root process would hand the network process a uid that owns the system's files.
// FTP_PROXY_PRIVSEP=0 keeps one process (to measure what the split costs).
import { existsSync } from 'node:fs';
import { CAP_SETPCAP } from '../privileges.js';

/** The user a daemon started as root drops to on Linux when --user does not name one. */
export const DEFAULT_USER = 'ftp-proxy';

export const PRIVSEP_ENV = 'FTP_PROXY_PRIVSEP';

export type Plan = { split: true; setpriv: string; dropBounding: boolean } | { split: false; why: string };

export interface Host {
  platform: string;
  uid: number;
  /** Effective capabilities. */
  caps: bigint;
  env: NodeJS.ProcessEnv;
  /** setpriv(1)'s path, or null. */
  setpriv: string | null;
}

export function findSetpriv(path = process.env.PATH ?? '/usr/bin:/bin'): string | null {
  const dir = path.split(':').find((d) => d && existsSync(`${d}/setpriv`));
  return dir ? `${dir}/setpriv` : null;
}

/** Does this configuration want the split here at all (not pf, not OpenBSD, not turned off)? */
export function splitWanted(platform: string, backend: string, env: NodeJS.ProcessEnv): boolean {
  return platform === 'linux' && backend !== 'pf' && env[PRIVSEP_ENV] !== '0';
}

export function plan(backend: string, h: Host): Plan {
  if (!splitWanted(h.platform, backend, h.env)) return { split: false, why: 'not wanted' };
  if (h.uid === 0) return { split: false, why: 'running as root' };
  if (!h.setpriv) return { split: false, why: 'setpriv(1) not found (util-linux)' };
  return { split: true, setpriv: h.setpriv, dropBounding: (h.caps & (1n << BigInt(CAP_SETPCAP))) !== 0n };
}
