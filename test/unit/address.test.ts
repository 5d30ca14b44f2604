// Address validation and canonical text (src/net/address.ts).
import { describe, expect, it } from 'vitest';
import { canonical, type Family, familyOf, hostPort, ipv4Octets, isIPv4, isIPv6 } from '../../src/net/address.js';

describe('isIPv4: strict dotted quad', () => {
  it.each(['0.0.0.0', '127.0.0.1', '10.0.0.1', '192.168.1.10', '255.255.255.255', '1.2.3.4', '100.10.0.200'])('%j yes', (a) => {
    expect(isIPv4(a)).toBe(true);
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '1.2.3.256',
    '999.1.1.1',
    '1234.1.1.1',
    '01.2.3.4',
    '1.2.3.04',
    '00.0.0.0',
    '0.0.0.00',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '1.2.3.4\n',
    '1..3.4',
    '1.2.3.',
    '.1.2.3',
    '-1.2.3.4',
    '+1.2.3.4',
    '0x1.2.3.4',
    '1.2.3.4/24',
    '1.2.3.4:21',
    '::ffff:1.2.3.4',
    '::1',
    'a.b.c.d',
    '\uff11.2.3.4',
    '16909060',
  ])('%j no', (a) => {
    expect(isIPv4(a)).toBe(false);
  });
});

describe('isIPv6', () => {
  it.each([
    '::',
    '::1',
    '2001:db8::1',
    '2001:DB8::1',
    '1:2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7::',
    '::2:3:4:5:6:7:8',
    '1::',
    'fe80::1',
    '0:0:0:0:0:0:0:1',
    '2001:0db8:0000:0000:0000:0000:0000:0001',
    '01:0002::',
    '::ffff:1.2.3.4',
    '1:2:3:4:5:6:1.2.3.4',
  ])('%j yes', (a) => {
    expect(isIPv6(a)).toBe(true);
  });

  it.each([
    '',
    '1.2.3.4',
    ':',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '0::0:0:0:0:0:0:0',
    ':1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:',
    '1:2',
    '[::1]',
    '::1/64',
    'fe80::1%eth0',
    'fe80::1%1',
    'g::1',
    '12345::',
    '00001::',
    ' ::1',
    '::1 ',
    '::ffff:256.1.1.1',
    '::ffff:01.2.3.4',
    '::ffff:1.2.3',
    '1:2:3:4:5:6:7:1.2.3.4',
    'localhost',
  ])('%j no', (a) => {
    expect(isIPv6(a)).toBe(false);
  });
});

describe('familyOf', () => {
  it.each<[string, Family | null]>([
    ['10.0.0.1', 4],
    ['0.0.0.0', 4],
    ['::1', 6],
    ['::', 6],
    ['2001:db8::1', 6],
    ['::ffff:1.2.3.4', 6],
    ['localhost', null],
    ['ftp.example.org', null],
    ['01.2.3.4', null],
    ['fe80::1%eth0', null],
    ['', null],
  ])('%j -> %s', (a, family) => {
    expect(familyOf(a)).toBe(family);
  });
});

describe('canonical', () => {
  it.each([
    // IPv4 as is
    ['10.0.0.1', '10.0.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    // IPv4-mapped IPv6, in every spelling, becomes IPv4
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['::FFFF:10.0.0.1', '10.0.0.1'],
    ['::ffff:0.0.0.0', '0.0.0.0'],
    ['::ffff:255.255.255.255', '255.255.255.255'],
    ['0:0:0:0:0:ffff:10.0.0.1', '10.0.0.1'],
    ['::ffff:a00:1', '10.0.0.1'],
    ['0000:0000:0000:0000:0000:FFFF:0A00:0001', '10.0.0.1'],
    ['::ffff:c0a8:10a', '192.168.1.10'],
    // look-alikes that are not IPv4-mapped stay IPv6
    ['::ffff:0:10.0.0.1', '::ffff:0:a00:1'],
    ['::1.2.3.4', '::102:304'],
    ['1::ffff:10.0.0.1', '1::ffff:a00:1'],
    ['::fffe:10.0.0.1', '::fffe:a00:1'],
    // RFC 5952: lower case, no leading zeros, the longest run of zero words (2 or more) as "::"
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8::0:1', '2001:db8::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['1:0:0:0:0:0:0:1', '1::1'],
    ['FE80::ABCD', 'fe80::abcd'],
    ['2001:DB8:AAAA:BBBB:CCCC:DDDD:EEEE:FFFF', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff'],
    // the longest run wins; the first on a tie
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    ['0:1:0:0:1:0:0:0', '0:1:0:0:1::'],
    // a single zero word is not compressed
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    // not an address: unchanged
    ['localhost', 'localhost'],
    ['::ffff:01.2.3.4', '::ffff:01.2.3.4'],
    ['01.2.3.4', '01.2.3.4'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
    ['', ''],
  ])('%j -> %j', (input, expected) => {
    expect(canonical(input)).toBe(expected);
    expect(canonical(expected)).toBe(expected);
  });
});

describe('hostPort', () => {
  it.each<[string, number, string]>([
    ['10.0.0.1', 21, '10.0.0.1:21'],
    ['127.0.0.1', 8021, '127.0.0.1:8021'],
    ['::1', 8021, '[::1]:8021'],
    ['2001:db8::1', 0, '[2001:db8::1]:0'],
    ['::ffff:10.0.0.1', 21, '[::ffff:10.0.0.1]:21'],
    ['localhost', 21, 'localhost:21'],
  ])('%j %d -> %j', (address, port, expected) => {
    expect(hostPort(address, port)).toBe(expected);
  });
});

describe('ipv4Octets', () => {
  it.each<[string, number[]]>([
    ['192.168.1.10', [192, 168, 1, 10]],
    ['0.0.0.0', [0, 0, 0, 0]],
    ['255.255.255.255', [255, 255, 255, 255]],
  ])('%j', (address, octets) => {
    expect(ipv4Octets(address)).toEqual(octets);
  });
});
