// Giving up what the daemon does not need (OpenBSD drops to _ftp_proxy). On Linux: run as an
// unprivileged user keeping only CAP_NET_ADMIN (the firewall, IP_TRANSPARENT) and, for a listen port
// below 1024, CAP_NET_BIND_SERVICE.
//
// Capabilities belong to threads, and libnftables runs on libuv's thread pool, whose threads exist from
// Node's start-up: a setuid() inside a running Node would leave them without CAP_NET_ADMIN. So the daemon
// process is *started* as that user, with the capabilities in its ambient set from exec on (every thread
// has them, and so do the `nft`/`iptables-restore` it runs), through util-linux's setpriv(1).
import { readFileSync } from 'node:fs';

export const CAP_SETPCAP = 8;
export const CAP_NET_BIND_SERVICE = 10;
export const CAP_NET_ADMIN = 12;

const NAMES: Record<number, string> = { [CAP_SETPCAP]: 'setpcap', [CAP_NET_BIND_SERVICE]: 'net_bind_service', [CAP_NET_ADMIN]: 'net_admin' };

/** "CAP_NET_ADMIN and CAP_SETPCAP", for log lines. */
export const capNames = (caps: number[]): string => caps.map((c) => `CAP_${NAMES[c]!.toUpperCase()}`).join(', ').replace(/, ([^,]*)$/, ' and $1');

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

/** A user from passwd(5) text, by name or number. */
export function lookupUser(passwd: string, user: string): PasswdEntry | null {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length < 4) continue;
    if (f[0] === user || (/^\d+$/.test(user) && f[2] === user)) return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

/** The effective capability mask from /proc/self/status (bit n = capability n). */
export function effectiveCaps(status = readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export const capMask = (caps: number[]): bigint => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);

/** The setpriv(1) words that start a command as `pw` with only `keep`, in every set that matters. */
export function setprivArgs(pw: PasswdEntry, keep: number[]): string[] {
  const caps = keep.map((c) => `+${NAMES[c]}`).join(',');
  return [
    `--reuid=${pw.uid}`,
    `--regid=${pw.gid}`,
    '--init-groups',
    `--inh-caps=-all,${caps}`,
    `--ambient-caps=-all,${caps}`,
    `--bounding-set=-all,${caps}`,
    '--',
  ];
}
