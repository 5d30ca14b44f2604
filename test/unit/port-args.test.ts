// PORT / EPRT / 227 / 229 parsers and formatters (src/ftp/port-args.ts), table-driven.
import { describe, expect, it } from 'vitest';
import {
  format227,
  format229,
  formatEprt,
  formatPort,
  parse227,
  parse229,
  parseEprtArg,
  parsePortArg,
  stripEol,
} from '../../src/ftp/port-args.js';
import type { Family } from '../../src/net/address.js';

describe('stripEol', () => {
  it.each([
    ['PORT 1,2,3,4,5,6\r\n', 'PORT 1,2,3,4,5,6'],
    ['NOOP\n', 'NOOP'],
    ['NOOP\r', 'NOOP'],
    ['NOOP', 'NOOP'],
    ['', ''],
    ['\r\n', ''],
    ['\n', ''],
    ['A\rB\r\n', 'A\rB'],
    ['NOOP \r\n', 'NOOP '],
    ['A\n\n', 'A\n'],
    ['A\r\n\r\n', 'A\r\n'],
  ])('%j -> %j', (input, expected) => {
    expect(stripEol(input)).toBe(expected);
  });
});

describe('parsePortArg', () => {
  it.each([
    ['192,168,1,10,156,187', '192.168.1.10', 40123],
    ['192,168,1,10,156,187\r\n', '192.168.1.10', 40123],
    ['192,168,1,10,156,187\n', '192.168.1.10', 40123],
    [' 10,0,0,1,4,1 \r\n', '10.0.0.1', 1025],
    ['1, 2, 3, 4, 5, 6', '1.2.3.4', 1286],
    ['001,002,003,004,005,006', '1.2.3.4', 1286],
    ['0,0,0,0,0,0', '0.0.0.0', 0],
    ['0,0,0,0,0,1', '0.0.0.0', 1],
    ['10,0,0,1,3,255', '10.0.0.1', 1023],
    ['10,0,0,1,4,0', '10.0.0.1', 1024],
    ['255,255,255,255,255,254', '255.255.255.255', 65534],
    ['255,255,255,255,255,255', '255.255.255.255', 65535],
    // Beside the one-pass reader of the plain form: what only the general path takes.
    ['1,2,3,4,5,6\t', '1.2.3.4', 1286],
    ['\u00a01,2,3,4,5,6', '1.2.3.4', 1286],
    ['1 ,2,3,4,5,6', '1.2.3.4', 1286],
    ['12,34,56,78,90,12', '12.34.56.78', 23052],
  ])('%j -> %s port %d', (arg, address, port) => {
    expect(parsePortArg(arg)).toEqual({ ok: true, value: { address, port } });
  });

  it.each([
    ['empty', ''],
    ['only a line ending', '\r\n'],
    ['five numbers', '1,2,3,4,5'],
    ['seven numbers', '1,2,3,4,5,6,7'],
    ['trailing comma', '1,2,3,4,5,6,'],
    ['leading comma', ',1,2,3,4,5,6'],
    ['empty field', '1,,3,4,5,6'],
    ['address byte 256', '256,1,1,1,1,1'],
    ['last address byte 256', '1,2,3,256,5,6'],
    ['port high byte 256', '1,2,3,4,256,1'],
    ['port low byte 256', '1,2,3,4,5,256'],
    ['port 65536 as 256,0', '1,2,3,4,256,0'],
    ['four-digit number', '1,2,3,4,5,1000'],
    ['four digits with leading zeros', '1,2,3,4,5,0255'],
    ['four digits with leading zeros first', '0001,2,3,4,5,6'],
    ['address byte 300 in the plain form', '300,2,3,4,5,6'],
    ['negative address byte', '-1,2,3,4,5,6'],
    ['negative port byte', '1,2,3,4,5,-6'],
    ['plus sign', '+1,2,3,4,5,6'],
    ['trailing junk after a space', '1,2,3,4,5,6 junk'],
    ['trailing junk', '1,2,3,4,5,6x'],
    ['letters', 'a,b,c,d,e,f'],
    ['hex', '1,2,3,4,0x10,1'],
    ['huge number', '99999999999999999999,1,1,1,1,1'],
    ['dots', '1.2.3.4.5.6'],
    ['semicolons', '1;2;3;4;5;6'],
    ['space inside a number', '1,2,3,4,1 0,6'],
    ['full-width digit', '\uff11,2,3,4,5,6'],
    ['decimal point', '1,2,3,4,5.0,6'],
  ])('rejects %s (%j)', (_name, arg) => {
    const r = parsePortArg(arg);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).not.toBe('');
  });
});

describe('parseEprtArg', () => {
  it.each<[string, Family, string, number]>([
    // RFC 2428 section 2 examples
    ['|1|132.235.1.2|6275|', 4, '132.235.1.2', 6275],
    ['|2|1080::8:800:200C:417A|5282|', 6, '1080::8:800:200c:417a', 5282],
    ['|1|132.235.1.2|6275|\r\n', 4, '132.235.1.2', 6275],
    ['|1|132.235.1.2|6275|\n', 4, '132.235.1.2', 6275],
    [' |1|10.0.0.1|50000| ', 4, '10.0.0.1', 50000],
    // any printable ASCII 33..126 but digits may delimit
    ['!1!10.0.0.1!50000!', 4, '10.0.0.1', 50000],
    ['~1~10.0.0.1~50000~', 4, '10.0.0.1', 50000],
    ['#2#::1#1025#', 6, '::1', 1025],
    ['.2.::1.1025.', 6, '::1', 1025],
    [':1:10.0.0.1:2000:', 4, '10.0.0.1', 2000],
    ['a1a10.0.0.1a2000a', 4, '10.0.0.1', 2000],
    ['*1*10.0.0.1*2000*', 4, '10.0.0.1', 2000],
    // IPv6 spellings come back canonical (RFC 5952)
    ['|2|2001:DB8:0:0:0:0:0:1|2000|', 6, '2001:db8::1', 2000],
    ['|2|2001:0db8:0000:0000:0000:0000:0000:0001|2000|', 6, '2001:db8::1', 2000],
    ['|2|2001:db8::1|2000|', 6, '2001:db8::1', 2000],
    ['|2|::|2000|', 6, '::', 2000],
    ['|2|fe80::|2000|', 6, 'fe80::', 2000],
    ['|2|1:2:3:4:5:6:7:8|2000|', 6, '1:2:3:4:5:6:7:8', 2000],
    // an IPv4-mapped address keeps af 2 but its address is the canonical IPv4 text
    ['|2|::ffff:1.2.3.4|2000|', 6, '1.2.3.4', 2000],
    ['|2|::FFFF:1.2.3.4|2000|', 6, '1.2.3.4', 2000],
    // ports: the parser takes 1..65535 (the session refuses < 1024 itself)
    ['|1|10.0.0.1|1|', 4, '10.0.0.1', 1],
    ['|1|10.0.0.1|1023|', 4, '10.0.0.1', 1023],
    ['|1|10.0.0.1|65535|', 4, '10.0.0.1', 65535],
    ['|1|10.0.0.1|00021|', 4, '10.0.0.1', 21],
  ])('%j -> af %d %s port %d', (arg, family, address, port) => {
    expect(parseEprtArg(arg)).toEqual({ ok: true, value: { family, address, port } });
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['af 3', '|3|10.0.0.1|2000|'],
    ['af 0', '|0|10.0.0.1|2000|'],
    ['af 01', '|01|10.0.0.1|2000|'],
    ['empty af', '||10.0.0.1|2000|'],
    ['af 1 with an IPv6 address', '|1|::1|2000|'],
    ['af 2 with an IPv4 address', '|2|10.0.0.1|2000|'],
    ['empty address', '|1||2000|'],
    ['port 0', '|1|10.0.0.1|0|'],
    ['port 00000', '|1|10.0.0.1|00000|'],
    ['port 65536', '|1|10.0.0.1|65536|'],
    ['six-digit port', '|1|10.0.0.1|100000|'],
    ['huge port', '|1|10.0.0.1|99999999999999999999|'],
    ['negative port', '|1|10.0.0.1|-1|'],
    ['port with plus sign', '|1|10.0.0.1|+2000|'],
    ['port with a space', '|1|10.0.0.1| 2000|'],
    ['port with a space inside', '|1|10.0.0.1|20 00|'],
    ['hex port', '|1|10.0.0.1|0x7d0|'],
    ['empty port', '|1|10.0.0.1||'],
    ['no final delimiter', '|1|10.0.0.1|2000'],
    ['trailing junk', '|1|10.0.0.1|2000|junk'],
    ['extra field', '|1|10.0.0.1|2000||'],
    ['missing field', '|1|2000|'],
    ['mismatched delimiters', '|1|10.0.0.1!2000!'],
    ['mismatched after the first', '|1!10.0.0.1!2000!'],
    ['digit delimiter', '1110.0.0.1120001'],
    ['digit delimiter 5', '5155.0.0.155000055'],
    ['DEL delimiter', '\x7f1\x7f10.0.0.1\x7f2000\x7f'],
    ['non-ASCII delimiter', '\u00e91\u00e910.0.0.1\u00e92000\u00e9'],
    ['address byte 256', '|1|256.0.0.1|2000|'],
    ['IPv4 leading zero', '|1|010.0.0.1|2000|'],
    ['three-part IPv4', '|1|10.0.1|2000|'],
    ['space before the address', '|1| 10.0.0.1|2000|'],
    ['hostname', '|1|ftp.example.org|2000|'],
    ['two "::"', '|2|1::2::3|2000|'],
    ['nine IPv6 groups', '|2|1:2:3:4:5:6:7:8:9|2000|'],
    ['IPv6 zone', '|2|fe80::1%eth0|2000|'],
    ['bracketed IPv6', '|2|[::1]|2000|'],
    ['IPv6 prefix length', '|2|::1/64|2000|'],
    ['bad mapped IPv4', '|2|::ffff:256.1.1.1|2000|'],
    ['delimiter that splits the address', '.1.10.0.0.1.2000.'],
    ['colon delimiter with IPv6', ':2:::1:2000:'],
  ])('rejects %s (%j)', (_name, arg) => {
    const r = parseEprtArg(arg);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).not.toBe('');
  });
});

describe('parse227', () => {
  it.each([
    ['227 Entering Passive Mode (192,168,1,1,195,80)\r\n', '192.168.1.1', 50000],
    ['227 Entering Passive Mode (192,168,1,1,195,80).\r\n', '192.168.1.1', 50000],
    ['227 Entering Passive Mode (192,168,1,1,195,80)', '192.168.1.1', 50000],
    ['227 Entering Passive Mode 192,168,1,1,195,80\r\n', '192.168.1.1', 50000],
    ['227 Entering Passive Mode. 192,168,1,1,195,80\r\n', '192.168.1.1', 50000],
    ['227 =192,168,1,1,195,80\r\n', '192.168.1.1', 50000],
    ['227 Entering Passive Mode (192,168,1,1,195,80). OK, go ahead\r\n', '192.168.1.1', 50000],
    ['227 Entering Passive Mode (192,168,1,1,195,80) 42 left\r\n', '192.168.1.1', 50000],
    ['227 Entering Passive Mode (192, 168, 1, 1, 195, 80)\r\n', '192.168.1.1', 50000],
    ['227 Entering Passive Mode (01,2,3,4,5,6)\r\n', '1.2.3.4', 1286],
    ['227-Entering Passive Mode\r\n227 (10,0,0,1,4,1)\r\n', '10.0.0.1', 1025],
    ['227-Passive (10,0,0,1,4,1)\r\n227 OK\r\n', '10.0.0.1', 1025],
    ['227-Welcome 2 you\r\n227-Some text\r\n227 Entering Passive Mode (10,0,0,1,195,80)\r\n', '10.0.0.1', 50000],
    ['227 Entering Passive Mode (0,0,0,0,0,0)\r\n', '0.0.0.0', 0],
    ['227 Entering Passive Mode (255,255,255,255,255,255)\r\n', '255.255.255.255', 65535],
    ['227 Entering Passive Mode (10,0,0,1,3,255)\r\n', '10.0.0.1', 1023],
  ])('%j -> %s port %d', (text, address, port) => {
    expect(parse227(text)).toEqual({ ok: true, value: { address, port } });
  });

  it.each([
    ['empty', ''],
    ['no numbers', '227 Entering Passive Mode\r\n'],
    ['five numbers', '227 Entering Passive Mode (1,2,3,4,5)\r\n'],
    ['a number embedded in a longer one before', '227 Entering Passive Mode (1234,5,6,7,8,9)\r\n'],
    ['a number embedded in a longer one after', '227 Entering Passive Mode (1,2,3,4,5,6789)\r\n'],
    ['a last number of four digits', '227 Entering Passive Mode (10,0,0,1,4,1000)\r\n'],
    ['a first number of four digits', '227 Entering Passive Mode (1010,0,0,1,4,1)\r\n'],
    ['address byte 256', '227 Entering Passive Mode (256,1,1,1,1,1)\r\n'],
    ['port byte 256', '227 Entering Passive Mode (10,0,0,1,256,1)\r\n'],
    ['port low byte 999', '227 Entering Passive Mode (10,0,0,1,4,999)\r\n'],
    ['last address byte 300', '227 Entering Passive Mode (10,0,0,300,4,1)\r\n'],
    ['negative number', '227 Entering Passive Mode (1,2,3,4,5,-6)\r\n'],
    ['letters', '227 Entering Passive Mode (a,b,c,d,e,f)\r\n'],
    ['semicolons', '227 Entering Passive Mode (1;2;3;4;5;6)\r\n'],
    ['dotted address', '227 Entering Passive Mode (10.0.0.1:50000)\r\n'],
    ['numbers split over two lines', '227-Entering Passive Mode (10,0,0,\r\n227 1,4,1)\r\n'],
  ])('rejects %s (%j)', (_name, text) => {
    expect(parse227(text).ok).toBe(false);
  });
});

describe('parse229', () => {
  it.each([
    ['229 Entering Extended Passive Mode (|||6446|)\r\n', 6446],
    ['229 Entering Extended Passive Mode (|||6446|)', 6446],
    ['229 Entering Extended Passive Mode (|||6446|).\r\n', 6446],
    ['229 Entering Extended Passive Mode (|||6446|) OK\r\n', 6446],
    ['229 (!!!6446!)\r\n', 6446],
    ['229 (###65535#)\r\n', 65535],
    ['229 (~~~1~)\r\n', 1],
    ['229 (aaa1024a)\r\n', 1024],
    ['229 (|||06446|)\r\n', 6446],
    ['229-Extended Passive\r\n229 (|||6446|)\r\n', 6446],
    ['229-Entering Extended Passive Mode (|||6446|)\r\n229 OK\r\n', 6446],
  ])('%j -> %d', (text, port) => {
    expect(parse229(text)).toEqual({ ok: true, value: port });
  });

  it.each([
    ['empty', ''],
    ['no port', '229 Entering Extended Passive Mode\r\n'],
    ['port 0', '229 Entering Extended Passive Mode (|||0|)\r\n'],
    ['port 65536', '229 Entering Extended Passive Mode (|||65536|)\r\n'],
    ['six-digit port', '229 Entering Extended Passive Mode (|||123456|)\r\n'],
    ['negative port', '229 Entering Extended Passive Mode (|||-1|)\r\n'],
    ['port with plus sign', '229 Entering Extended Passive Mode (|||+6446|)\r\n'],
    ['port with a space', '229 Entering Extended Passive Mode (||| 6446|)\r\n'],
    ['empty port', '229 Entering Extended Passive Mode (||||)\r\n'],
    ['mismatched final delimiter', '229 Entering Extended Passive Mode (|||6446!)\r\n'],
    ['mismatched first delimiter', '229 Entering Extended Passive Mode (!||6446|)\r\n'],
    ['two leading delimiters', '229 Entering Extended Passive Mode (||6446|)\r\n'],
    ['four leading delimiters', '229 Entering Extended Passive Mode (||||6446|)\r\n'],
    ['no closing parenthesis', '229 Entering Extended Passive Mode (|||6446|\r\n'],
    ['no parentheses', '229 Entering Extended Passive Mode |||6446|\r\n'],
    ['address filled in', '229 Entering Extended Passive Mode (|1|10.0.0.1|6446|)\r\n'],
    ['digit delimiter', '229 Entering Extended Passive Mode (1112221)\r\n'],
    ['space delimiter', '229 Entering Extended Passive Mode (   6446 )\r\n'],
    ['DEL delimiter', '229 Entering Extended Passive Mode (\x7f\x7f\x7f6446\x7f)\r\n'],
    ['a 227 reply', '227 Entering Passive Mode (10,0,0,1,25,46)\r\n'],
  ])('rejects %s (%j)', (_name, text) => {
    expect(parse229(text).ok).toBe(false);
  });
});

describe('formatters', () => {
  it.each([
    [formatPort('192.168.1.10', 40123), 'PORT 192,168,1,10,156,187\r\n'],
    [formatPort('10.0.0.1', 49152), 'PORT 10,0,0,1,192,0\r\n'],
    [formatPort('10.0.0.1', 65534), 'PORT 10,0,0,1,255,254\r\n'],
    [formatPort('0.0.0.0', 255), 'PORT 0,0,0,0,0,255\r\n'],
    [formatEprt(4, '10.0.0.1', 50000), 'EPRT |1|10.0.0.1|50000|\r\n'],
    [formatEprt(6, '2001:db8::1', 50000), 'EPRT |2|2001:db8::1|50000|\r\n'],
    [format227('203.0.113.5', 61000), '227 Entering Passive Mode (203,0,113,5,238,72)\r\n'],
    [format227('10.0.0.1', 256), '227 Entering Passive Mode (10,0,0,1,1,0)\r\n'],
    [format229(61000), '229 Entering Extended Passive Mode (|||61000|)\r\n'],
    [format229(49152), '229 Entering Extended Passive Mode (|||49152|)\r\n'],
  ])('%j', (actual, expected) => {
    expect(actual).toBe(expected);
  });

  it('names each address right however many were formatted before (the remembered comma forms)', () => {
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 200; i++) {
        const address = `10.${round}.${i >> 8}.${i & 255}`;
        expect(format227(address, 61000)).toBe(`227 Entering Passive Mode (10,${round},${i >> 8},${i & 255},238,72)\r\n`);
        expect(formatPort('192.0.2.1', 49152 + i)).toBe(`PORT 192,0,2,1,${(49152 + i) >> 8},${(49152 + i) & 255}\r\n`);
      }
    }
  });
});

describe('round trips: format, then parse', () => {
  const ports = [1, 255, 256, 1023, 1024, 40123, 49152, 61000, 65534, 65535];
  const v4 = ['0.0.0.0', '10.0.0.1', '192.168.1.10', '203.0.113.5', '255.255.255.255'];
  const v6 = ['::', '::1', '2001:db8::1', 'fe80::1:2:3:4', '1:2:3:4:5:6:7:8', '2001:db8::1:0:0:1'];
  const v4Cases = v4.flatMap((address) => ports.map((port) => [address, port] as const));
  const v6Cases = v6.flatMap((address) => ports.map((port) => [address, port] as const));

  it.each(v4Cases)('PORT %s %d', (address, port) => {
    const line = formatPort(address, port);
    expect(line.startsWith('PORT ')).toBe(true);
    expect(parsePortArg(line.slice('PORT '.length))).toEqual({ ok: true, value: { address, port } });
  });

  it.each(v4Cases)('227 %s %d', (address, port) => {
    expect(parse227(format227(address, port))).toEqual({ ok: true, value: { address, port } });
  });

  it.each(v4Cases)('EPRT |1| %s %d', (address, port) => {
    const line = formatEprt(4, address, port);
    expect(parseEprtArg(line.slice('EPRT '.length))).toEqual({ ok: true, value: { family: 4, address, port } });
  });

  it.each(v6Cases)('EPRT |2| %s %d', (address, port) => {
    const line = formatEprt(6, address, port);
    expect(parseEprtArg(line.slice('EPRT '.length))).toEqual({ ok: true, value: { family: 6, address, port } });
  });

  it.each(ports)('229 %d', (port) => {
    expect(parse229(format229(port))).toEqual({ ok: true, value: port });
  });
});
