// Address helpers: validation and canonical text forms, so that the same host always compares equal
// (Node reports IPv4 peers of a dual-stack socket as "::ffff:a.b.c.d").
import { IPv4, IPv6 } from 'ip-num';

export type Family = 4 | 6;

export function familyOf(address: string): Family | null {
  if (isIPv4(address)) return 4;
  if (isIPv6(address)) return 6;
  return null;
}

export function isIPv4(address: string): boolean {
  // ip-num accepts some forms inet_pton would not (leading zeros); keep to the strict dotted quad.
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) return false;
  return address.split('.').every((o) => Number(o) <= 255 && (o === '0' || !o.startsWith('0')));
}

export function isIPv6(address: string): boolean {
  if (!address.includes(':') || address.includes('%')) return false;
  try {
    IPv6.fromString(address);
    return true;
  } catch {
    return false;
  }
}

/** Canonical text: IPv4-mapped IPv6 becomes IPv4; IPv6 is lower-case and compressed (RFC 5952). */
export function canonical(address: string): string {
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address;
  const words = IPv6.fromString(address)
    .toString()
    .split(':')
    .map((h) => parseInt(h, 16));
  // Every spelling of ::ffff:a.b.c.d ("0:0:0:0:0:ffff:a00:1" too, as a raw sockaddr_in6 gives it).
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return [words[6]! >> 8, words[6]! & 255, words[7]! >> 8, words[7]! & 255].join('.');
  }
  return compressIPv6(words);
}

/** RFC 5952 text of eight 16-bit words. */
export function compressIPv6(words: number[]): string {
  // Longest run of zero words (length >= 2) becomes "::", first one on a tie (RFC 5952 4.2).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => (w ?? 0).toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

export function ipv4Octets(address: string): number[] {
  return IPv4.fromString(address)
    .toString()
    .split('.')
    .map((o) => Number(o));
}

/** "host:port" for IPv4, "[host]:port" for IPv6, as log lines show them. */
export function hostPort(address: string, port: number): string {
  return familyOf(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}
