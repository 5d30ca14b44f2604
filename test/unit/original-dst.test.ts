// struct sockaddr_in / sockaddr_in6 as getsockopt(SO_ORIGINAL_DST) fills them (src/net/original-dst.ts).
import { describe, expect, it } from 'vitest';
import { parseSockaddr } from '../../src/net/original-dst.js';

/** sockaddr_in: family (host order, little-endian here) at 0, port (network order) at 2, address at 4. */
function sockaddrIn(octets: number[], port: number, size = 16): Buffer {
  const b = Buffer.alloc(size, 0xee); // junk everywhere the parser must not look
  b.writeUInt16LE(2, 0);
  b.writeUInt16BE(port, 2);
  Buffer.from(octets).copy(b, 4);
  return b;
}

/** sockaddr_in6: family 10 at 0, port at 2, flowinfo at 4, address at 8..23, scope id at 24. */
function sockaddrIn6(words: number[], port: number): Buffer {
  const b = Buffer.alloc(28, 0xee);
  b.writeUInt16LE(10, 0);
  b.writeUInt16BE(port, 2);
  b.writeUInt32BE(0xdeadbeef, 4);
  words.forEach((w, i) => b.writeUInt16BE(w, 8 + 2 * i));
  b.writeUInt32LE(3, 24);
  return b;
}

describe('parseSockaddr: AF_INET', () => {
  it.each<[number[], number, string]>([
    [[10, 0, 0, 1], 21, '10.0.0.1'],
    [[198, 51, 100, 21], 2121, '198.51.100.21'],
    [[0, 0, 0, 0], 0, '0.0.0.0'],
    [[255, 255, 255, 255], 65535, '255.255.255.255'],
    [[127, 0, 0, 1], 8021, '127.0.0.1'],
  ])('%j port %d', (octets, port, address) => {
    expect(parseSockaddr(sockaddrIn(octets, port))).toEqual({ address, port });
    expect(parseSockaddr(sockaddrIn(octets, port, 28))).toEqual({ address, port });
  });

  it('reads the family little-endian and the port big-endian', () => {
    const raw = Buffer.from([2, 0, 0x1f, 0x90, 192, 168, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseSockaddr(raw)).toEqual({ address: '192.168.1.1', port: 8080 });
    const raw2 = Buffer.from([2, 0, 0x00, 0x15, 10, 0, 0, 21, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseSockaddr(raw2)).toEqual({ address: '10.0.0.21', port: 21 });
  });
});

describe('parseSockaddr: AF_INET6', () => {
  it.each<[number[], number, string]>([
    [[0, 0, 0, 0, 0, 0, 0, 1], 21, '::1'],
    [[0, 0, 0, 0, 0, 0, 0, 0], 0, '::'],
    [[0x2001, 0x0db8, 0, 0, 0, 0, 0, 1], 2121, '2001:db8::1'],
    [[0x2001, 0x0db8, 0, 0, 1, 0, 0, 1], 21, '2001:db8::1:0:0:1'],
    [[0xfe80, 0, 0, 0, 0, 0, 0, 1], 65535, 'fe80::1'],
    [[0x2001, 0xdb8, 0xaaaa, 0xbbbb, 0xcccc, 0xdddd, 0xeeee, 0xffff], 8021, '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff'],
    // IPv4-mapped: the same text as the IPv4 peer of a dual-stack socket
    [[0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001], 21, '10.0.0.1'],
    [[0, 0, 0, 0, 0, 0xffff, 0xc0a8, 0x010a], 21, '192.168.1.10'],
  ])('%j port %d -> %s', (words, port, address) => {
    expect(parseSockaddr(sockaddrIn6(words, port))).toEqual({ address, port });
  });

  it('reads the port big-endian', () => {
    const b = sockaddrIn6([0, 0, 0, 0, 0, 0, 0, 1], 0);
    b[2] = 0x1f;
    b[3] = 0x90;
    expect(parseSockaddr(b)).toEqual({ address: '::1', port: 8080 });
  });
});

describe('parseSockaddr: other families', () => {
  it.each<[string, number]>([
    ['AF_UNSPEC', 0],
    ['AF_UNIX', 1],
    ['AF_PACKET', 17],
    ['AF_INET6 of another system (BSD 24/28/30)', 28],
    ['AF_INET written big-endian', 0x0200],
    ['AF_INET6 written big-endian', 0x0a00],
  ])('%s (%d) -> null', (_name, family) => {
    const b = sockaddrIn6([0, 0, 0, 0, 0, 0, 0, 1], 21);
    b.writeUInt16LE(family, 0);
    expect(parseSockaddr(b)).toBeNull();
  });
});
