import { describe, expect, it } from 'vitest';
import { errnoText, gaiText } from '../../src/errno-text.js';

const sysErr = (code: string, errno: number): NodeJS.ErrnoException => Object.assign(new Error(`listen ${code}`), { code, errno });

describe('errnoText: OpenBSD strerror words, never a bare code', () => {
  it.each([
    ['EADDRNOTAVAIL', -99, "Can't assign requested address"],
    ['EADDRINUSE', -98, 'Address already in use'],
    ['EACCES', -13, 'Permission denied'],
    ['EPERM', -1, 'Operation not permitted'],
    // not in OpenBSD's table here: the system's own text, capitalized
    ['ENOTCONN', -107, 'Socket is not connected'],
  ])('%s', (code, errno, text) => {
    expect(errnoText(sysErr(code, errno))).toBe(text);
  });

  it('a plain error keeps its message', () => {
    expect(errnoText(new Error('boom'))).toBe('boom');
  });
});

describe('gaiText: gai_strerror words', () => {
  it.each([
    ['ENOTFOUND', 'no address associated with name'],
    ['EAI_AGAIN', 'temporary failure in name resolution'],
  ])('%s', (code, text) => {
    expect(gaiText(Object.assign(new Error('getaddrinfo'), { code }))).toBe(text);
  });
});
