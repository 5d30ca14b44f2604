// strnvis(3)-style encoding of logged control lines (src/ftp/vis.ts).
import { describe, expect, it } from 'vitest';
import { vis } from '../../src/ftp/vis.js';

describe('vis: encoding', () => {
  it.each([
    ['USER ftp\r\n', 'USER ftp\\r\\n'],
    ['227 Entering Passive Mode (10,0,0,1,195,80)\r\n', '227 Entering Passive Mode (10,0,0,1,195,80)\\r\\n'],
    ['bare LF\n', 'bare LF\\n'],
    ['a\rb', 'a\\rb'],
    ['a\\b', 'a\\\\b'],
    ['\\\\', '\\\\\\\\'],
    ['\\r', '\\\\r'],
    ['a\tb', 'a\tb'],
    ['\x07\x08\x0b\x0c', '\\a\\b\\v\\f'],
    ['a b', 'a b'],
    ['\0', '\\0'],
    ['a\0b', 'a\\0b'],
    ['\x001', '\\0001'],
    ['\x008', '\\08'],
    ['\x01', '\\^A'],
    ['\x1b[31mred', '\\^[[31mred'],
    ['\x1f', '\\^_'],
    ['\x7f', '\\^?'],
    ['\x80', '\\M^@'],
    ['\xa0', '\\240'],
    ['\xe9', '\\M-i'],
    ['\xff', '\\M^?'],
    ['\xff\xf4\xff\xf2', '\\M^?\\M-t\\M^?\\M-r'],
    ['', ''],
  ])('%j -> %j', (input, expected) => {
    expect(vis(input)).toBe(expected);
  });

  it('leaves every printable ASCII character but the backslash alone', () => {
    let printable = '';
    for (let c = 0x20; c < 0x7f; c++) if (c !== 0x5c) printable += String.fromCharCode(c);
    expect(vis(printable)).toBe(printable);
  });

  it('encodes every other byte so that the output is printable ASCII only', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const out = vis(all, 10_000);
    expect(out).toMatch(/^[\t\x20-\x7e]*$/); // tab stays raw (no VIS_TAB), like space
    expect(out).not.toContain('\n');
  });

  it('takes a Buffer', () => {
    expect(vis(Buffer.from([0x50, 0x57, 0x44, 0xff, 0x0d, 0x0a]))).toBe('PWD\\M^?\\r\\n');
  });

  it('reads a string as latin1, one byte per character', () => {
    expect(vis('caf\u00e9')).toBe('caf\\M-i');
  });
});

describe('vis: truncation at max', () => {
  it('cuts at 300 characters by default', () => {
    expect(vis('x'.repeat(400))).toBe('x'.repeat(300));
  });

  it.each<[string, number, string]>([
    ['abcdef', 3, 'abc'],
    ['abcdef', 6, 'abcdef'],
    ['abcdef', 100, 'abcdef'],
    ['abc', 0, ''],
    ['ab\r\n', 4, 'ab\\r'],
    ['ab\r\n', 3, 'ab'],
    ['ab\r\n', 5, 'ab\\r'],
    ['ab\r\n', 6, 'ab\\r\\n'],
    ['\xff\xff\xff', 10, '\\M^?\\M^?'],
    ['\xff\xff', 8, '\\M^?\\M^?'],
    ['\xff\xff', 7, '\\M^?'],
    ['\xff', 3, ''],
    ['\\\\', 3, '\\\\'],
    ['a\0', 2, 'a'],
    ['a\0', 3, 'a\\0'],
  ])('vis(%j, %d) -> %j', (input, max, expected) => {
    expect(vis(input, max)).toBe(expected);
  });

  it('never ends in the middle of an escape, and is the longest whole prefix that fits', () => {
    const input = 'PORT \\1\r\n\xff\0\tA\x1b';
    const pieces = [...input].map((ch) => vis(ch, 100));
    const full = pieces.join('');
    expect(vis(input, 1000)).toBe(full);
    for (let max = 0; max <= full.length + 1; max++) {
      let fit = '';
      for (const p of pieces) {
        if (fit.length + p.length > max) break;
        fit += p;
      }
      expect(vis(input, max), `max ${max}`).toBe(fit);
    }
  });
});
