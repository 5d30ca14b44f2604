// src/native.ts: which C library is tried, in what order (glibc, then musl, then node's own symbols), and
// that the one that loads is the one used.
import { describe, expect, it } from 'vitest';
import { libc, libcNames, loadFirst } from '../../src/native.js';

describe('libcNames', () => {
  it.each([
    ['linux', 'x64', ['libc.so.6', 'libc.musl-x86_64.so.1', null]],
    ['linux', 'arm64', ['libc.so.6', 'libc.musl-aarch64.so.1', null]],
    ['linux', 'arm', ['libc.so.6', 'libc.musl-armhf.so.1', null]],
    ['linux', 'loong64', ['libc.so.6', 'libc.musl-loong64.so.1', null]],
    ['openbsd', 'x64', ['libc.so', null]],
  ] as const)('%s/%s -> %j', (platform, arch, names) => expect(libcNames(platform, arch)).toEqual(names));
});

describe('loadFirst', () => {
  it('on musl (no libc.so.6) takes the musl name', () => {
    const tried: (string | null)[] = [];
    const r = loadFirst(libcNames('linux', 'x64'), (n) => {
      tried.push(n);
      if (n === 'libc.so.6') throw new Error('libc.so.6: cannot open shared object file');
      return `handle of ${n}`;
    });
    expect(r).toEqual({ lib: 'handle of libc.musl-x86_64.so.1', name: 'libc.musl-x86_64.so.1' });
    expect(tried).toEqual(['libc.so.6', 'libc.musl-x86_64.so.1']);
  });

  it("falls back to the process's own symbols, and names every failure when nothing loads", () => {
    expect(loadFirst(['a', null], (n) => (n === null ? 'self' : (() => { throw new Error('no'); })())).name).toBeNull();
    expect(() => loadFirst(['a', 'b'], () => { throw new Error('nope'); })).toThrow(/a: nope; b: nope/);
  });

  it('loads this host\'s libc and calls it', () => {
    const c = libc();
    expect(c).not.toBeNull();
    expect(c!.close(-1)).toBe(-1); // EBADF
    expect(c!.errno()).toBe(9);
  });
});
