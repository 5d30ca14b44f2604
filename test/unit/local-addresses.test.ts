// The host's own addresses from the kernel's tables (src/net/local-addresses.ts).
import { describe, expect, it } from 'vitest';
import { fibTrieLocal, ifInet6, isLocalAddress, localAddresses } from '../../src/net/local-addresses.js';

const FIB = `Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 192.168.1.0/24 2 0 2
        |-- 192.168.1.0
           /24 link UNICAST
        |-- 192.168.1.1
           /32 host LOCAL
        |-- 192.168.1.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 198.51.100.1
        /32 host LOCAL
     |-- 198.51.100.21
        /24 link UNICAST
`;
const INET6 = `00000000000000000000000000000001 01 80 10 80       lo
20010db8000100000000000000000001 03 40 00 80      lan
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
`;

describe('local addresses', () => {
  it('reads the LOCAL /32 entries of fib_trie, not the networks, broadcasts or other hosts', () => {
    expect(fibTrieLocal(FIB).sort()).toEqual(['192.168.1.1', '198.51.100.1']);
  });
  it('reads every IPv6 address of if_inet6, compressed', () => {
    expect(ifInet6(INET6)).toEqual(['::1', '2001:db8:1::1', 'fe80::fc:ff:fe00:1']);
  });
  it('puts both together, with the wildcards', () => {
    const set = localAddresses((p) => (p.endsWith('fib_trie') ? FIB : INET6));
    expect(set.has('192.168.1.1')).toBe(true);
    expect(set.has('2001:db8:1::1')).toBe(true);
    expect(set.has('198.51.100.21')).toBe(false);
    expect(set.has('0.0.0.0')).toBe(true);
  });
  it.each([
    ['127.0.0.5', true],
    ['::1', true],
    ['192.168.1.1', true],
    ['192.168.1.10', false],
  ])('isLocalAddress(%s) = %s', (a, expected) => {
    expect(isLocalAddress(a, () => new Set(['192.168.1.1']))).toBe(expected);
  });
});
