// The host's own addresses, as the kernel routes them. os.networkInterfaces() is not enough: it leaves
// out interfaces that are not yet "running" (a link that just came up, for about a second), and an
// address missed here lets a client make the proxy connect to itself.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { canonical } from './address.js';

/** IPv4 addresses of the local routing table, from /proc/net/fib_trie ("|-- a.b.c.d" then "/32 host LOCAL"). */
export function fibTrieLocal(text: string): string[] {
  const out = new Set<string>();
  let last = '';
  for (const line of text.split('\n')) {
    const addr = /\|-- (\d+\.\d+\.\d+\.\d+)$/.exec(line);
    if (addr) last = addr[1]!;
    else if (/\/32 host LOCAL/.test(line) && last) out.add(last);
  }
  return [...out];
}

/** IPv6 addresses from /proc/net/if_inet6 (32 hex digits, then index, prefix, scope, flags, name). */
export function ifInet6(text: string): string[] {
  return text
    .split('\n')
    .map((l) => /^([0-9a-f]{32})\s/.exec(l)?.[1])
    .filter((h): h is string => !!h)
    .map((h) => canonical(h.match(/.{4}/g)!.join(':')));
}

export function localAddresses(read = (p: string): string => readFileSync(p, 'utf8')): Set<string> {
  const all = new Set<string>(['0.0.0.0', '::']);
  try {
    for (const a of fibTrieLocal(read('/proc/net/fib_trie'))) all.add(a);
    for (const a of ifInet6(read('/proc/net/if_inet6'))) all.add(a);
    return all;
  } catch {
    // Not Linux: what Node sees.
    for (const i of Object.values(networkInterfaces()).flat()) if (i) all.add(canonical(i.address));
    return all;
  }
}

/** Is this one of the host's own addresses? (127/8 always is.) */
export function isLocalAddress(address: string, local: () => Set<string> = localAddresses): boolean {
  if (/^127\./.test(address) || address === '::1') return true;
  return local().has(address);
}
