// Service names and port numbers as getaddrinfo(3) takes them (src/net/services.ts).
import { describe, expect, it } from 'vitest';
import { lookupService, resolvePort } from '../../src/net/services.js';

const SERVICES = [
  '# Network services, Internet style (a services(5) fixture)',
  '',
  'tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer',
  'ftp-data\t20/tcp',
  'ftp\t\t21/tcp',
  'fsp\t\t21/udp\t\tfspd',
  'ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol',
  'tftp\t\t69/udp',
  'gopher\t\t70/tcp\t\t\t\t# Internet Gopher',
  'http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP',
  'kerberos\t88/tcp\t\tkerberos5 krb5 kerberos-sec\t# Kerberos v5',
  'kerberos\t88/udp\t\tkerberos5 krb5 kerberos-sec\t# Kerberos v5',
  '#disabled\t99/tcp',
  '   indented   4321/tcp   spaced   ',
  'syslog\t\t514/udp',
  'udponly\t\t4000/udp\tudpalias',
  'sctponly\t4001/sctp',
  'irc\t\t194/tcp#no space before the comment',
  'webcache\t8080/tcp\thttp-alt\t# WWW caching service',
  'dup\t\t5000/tcp',
  'dup\t\t5001/tcp',
  'crlf\t\t6000/tcp\r',
  'noport\t\tftp/tcp',
  'nofield',
].join('\n');

describe('lookupService', () => {
  it.each<[string, number | null]>([
    ['ftp', 21],
    ['ftp-data', 20],
    ['tcpmux', 1],
    ['ssh', 22],
    ['gopher', 70],
    ['http', 80],
    ['www', 80],
    ['kerberos', 88],
    ['krb5', 88],
    ['kerberos-sec', 88],
    ['http-alt', 8080],
    ['indented', 4321],
    ['spaced', 4321],
    ['irc', 194],
    ['crlf', 6000],
    ['dup', 5000],
    // udp-only and sctp-only entries are not tcp services
    ['fsp', null],
    ['fspd', null],
    ['tftp', null],
    ['syslog', null],
    ['udponly', null],
    ['udpalias', null],
    ['sctponly', null],
    // comments are not entries
    ['disabled', null],
    ['#disabled', null],
    ['Internet', null],
    ['Gopher', null],
    ['SSH', null],
    ['no', null],
    // names only, compared exactly
    ['FTP', null],
    ['ft', null],
    ['ftp-', null],
    [' ftp', null],
    ['21', null],
    ['21/tcp', null],
    ['tcp', null],
    ['', null],
    ['noport', null],
    ['nofield', null],
    ['nonexistent', null],
  ])('%j -> %s', (name, port) => {
    expect(lookupService(SERVICES, name)).toBe(port);
  });

  it('finds nothing in an empty file', () => {
    expect(lookupService('', 'ftp')).toBeNull();
  });
});

describe('resolvePort', () => {
  const fixture = (): string => SERVICES;
  it.each<[string, number | null]>([
    ['21', 21],
    ['1', 1],
    ['8021', 8021],
    ['65535', 65535],
    ['021', 21],
    ['0', null],
    ['00', null],
    ['65536', null],
    ['99999', null],
    ['99999999999999999999', null],
    ['ftp', 21],
    ['www', 80],
    ['http-alt', 8080],
    ['fspd', null],
    ['tftp', null],
    ['nonexistent', null],
    ['', null],
    ['-1', null],
    ['+21', null],
    [' 21', null],
    ['21 ', null],
    ['2 1', null],
    ['0x15', null],
    ['21.0', null],
    ['ftp ', null],
    ['ftp#', null],
  ])('%j -> %s', (spec, port) => {
    expect(resolvePort(spec, fixture)).toBe(port);
  });

  it('never reads services(5) for a number', () => {
    const never = (): string => {
      throw new Error('services(5) read');
    };
    expect(resolvePort('21', never)).toBe(21);
    expect(resolvePort('0', never)).toBeNull();
    expect(resolvePort('65536', never)).toBeNull();
  });

  it('knows "ftp" on this host', () => {
    expect(resolvePort('ftp')).toBe(21);
  });
});
