// A process's TCP sockets as the kernel holds them (Linux): /proc/<pid>/fd gives the socket inodes,
// /proc/<pid>/net/tcp{,6} the addresses (of that process's network namespace). For `ftp-proxy status`.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface TcpSocket {
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  state: 'listen' | 'established' | 'other';
}

/** "0100007F" -> 127.0.0.1; IPv6 is four little-endian 32-bit words. IPv4-mapped IPv6 comes out as IPv4. */
export function procAddress(hex: string): string {
  if (hex.length === 8) return le32(hex).join('.');
  const words = [0, 8, 16, 24].map((i) => le32(hex.slice(i, i + 8)));
  const b = words.flat();
  if (b.slice(0, 10).every((x) => x === 0) && b[10] === 255 && b[11] === 255) return b.slice(12).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return compress(groups);
}

function le32(hex: string): number[] {
  const n = parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
}

/** RFC 5952: the longest run of two or more zero groups becomes "::". */
function compress(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Rows of /proc/net/tcp text whose inode is in `inodes` (all rows when null). */
export function parseProcTcp(text: string, inodes: Set<string> | null): TcpSocket[] {
  const out: TcpSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    if (inodes && !inodes.has(f[9]!)) continue;
    const [la, lp] = f[1]!.split(':');
    const [ra, rp] = f[2]!.split(':');
    const st = f[3];
    out.push({
      local: procAddress(la!),
      localPort: parseInt(lp!, 16),
      remote: procAddress(ra!),
      remotePort: parseInt(rp!, 16),
      state: st === '0A' ? 'listen' : st === '01' ? 'established' : 'other',
    });
  }
  return out;
}

/** The TCP sockets process `pid` holds open; [] when it cannot be read (gone, or not Linux). */
export function processTcpSockets(pid: number): TcpSocket[] {
  let inodes: Set<string>;
  try {
    inodes = new Set(
      readdirSync(`/proc/${pid}/fd`)
        .map((fd) => {
          try {
            return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
          } catch {
            return undefined;
          }
        })
        .filter((x): x is string => x !== undefined),
    );
  } catch {
    return [];
  }
  const out: TcpSocket[] = [];
  for (const f of ['tcp', 'tcp6']) {
    try {
      out.push(...parseProcTcp(readFileSync(`/proc/${pid}/net/${f}`, 'utf8'), inodes));
    } catch {
      // no IPv6 in this kernel
    }
  }
  return out;
}
