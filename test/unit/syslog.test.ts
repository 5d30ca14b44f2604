// The RFC 3164 line glibc's syslog() sends (src/syslog.ts formatSyslog).
import { describe, expect, it } from 'vitest';
import { formatSyslog, LOG_DAEMON, PLATFORMS } from '../../src/syslog.js';
import { LOG_DEBUG, LOG_NOTICE } from '../../src/levels.js';

// Local-time constructor, as formatSyslog prints local time (glibc's syslog() does too).
const at = (month: number, day: number, h: number, m: number, s: number): Date => new Date(2023, month, day, h, m, s);

describe('formatSyslog', () => {
  it('the example line', () => {
    expect(formatSyslog(29, 'ftp-proxy', 42, 'hello', at(10, 1, 9, 5, 7))).toBe('<29>Nov  1 09:05:07 ftp-proxy[42]: hello');
  });

  it('daemon.notice is priority 29', () => {
    expect(LOG_DAEMON).toBe(24);
    expect(LOG_DAEMON | LOG_NOTICE).toBe(29);
  });

  it.each<[number, Date, string]>([
    [29, at(0, 1, 0, 0, 0), '<29>Jan  1 00:00:00'],
    [29, at(1, 9, 1, 2, 3), '<29>Feb  9 01:02:03'],
    [29, at(2, 10, 10, 20, 30), '<29>Mar 10 10:20:30'],
    [29, at(3, 30, 23, 59, 59), '<29>Apr 30 23:59:59'],
    [29, at(4, 5, 12, 0, 0), '<29>May  5 12:00:00'],
    [29, at(5, 15, 6, 6, 6), '<29>Jun 15 06:06:06'],
    [29, at(6, 31, 0, 0, 1), '<29>Jul 31 00:00:01'],
    [29, at(7, 20, 8, 8, 8), '<29>Aug 20 08:08:08'],
    [29, at(8, 9, 9, 9, 9), '<29>Sep  9 09:09:09'],
    [29, at(9, 31, 13, 14, 15), '<29>Oct 31 13:14:15'],
    [29, at(10, 11, 11, 11, 11), '<29>Nov 11 11:11:11'],
    [29, at(11, 25, 18, 30, 0), '<29>Dec 25 18:30:00'],
    [LOG_DAEMON | LOG_DEBUG, at(0, 1, 0, 0, 0), '<31>Jan  1 00:00:00'],
    [0, at(0, 1, 0, 0, 0), '<0>Jan  1 00:00:00'],
    [191, at(0, 1, 0, 0, 0), '<191>Jan  1 00:00:00'],
  ])('priority %d at %s', (pri, date, head) => {
    expect(formatSyslog(pri, 'ftp-proxy', 7, 'm', date)).toBe(`${head} ftp-proxy[7]: m`);
  });

  it.each<[string, number, string, string]>([
    ['ftp-proxy', 1, '#1 FTP session 1/100 started', 'ftp-proxy[1]: #1 FTP session 1/100 started'],
    ['x', 4194304, '', 'x[4194304]: '],
    ['ftp-proxy', 42, '100% done %s %d', 'ftp-proxy[42]: 100% done %s %d'],
    ['ftp-proxy', 42, 'client: USER ftp\\r\\n', 'ftp-proxy[42]: client: USER ftp\\r\\n'],
  ])('ident %j pid %d message %j', (ident, pid, message, tail) => {
    expect(formatSyslog(29, ident, pid, message, at(10, 1, 9, 5, 7))).toBe(`<29>Nov  1 09:05:07 ${tail}`);
  });

  it('uses the current time when no date is given', () => {
    expect(formatSyslog(29, 'ftp-proxy', 42, 'hello')).toMatch(
      /^<29>(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d ftp-proxy\[42\]: hello$/,
    );
  });
});

describe('struct sockaddr_un per platform', () => {
  it('Linux: family (16-bit, host order) then the NUL-terminated path', () => {
    const a = PLATFORMS.linux.sockaddr('/dev/log');
    expect([...a]).toEqual([1, 0, ...Buffer.from('/dev/log'), 0]);
  });
  it('OpenBSD: sun_len, sun_family, then the NUL-terminated path', () => {
    const a = PLATFORMS.openbsd.sockaddr('/dev/log');
    expect([...a]).toEqual([11, 1, ...Buffer.from('/dev/log'), 0]);
  });
});

describe('stderr under journald', () => {
  it('prefixes each line with its priority when asked (JOURNAL_STREAM), and not otherwise', async () => {
    const { Log } = await import('../../src/log.js');
    const lines: string[] = [];
    const j = new Log({ level: 7, format: 'text', write: (l) => lines.push(l), priorityPrefix: true });
    j.log(3, 'exiting on signal 15');
    j.log(6, '#1 ending session');
    const plain = new Log({ level: 7, format: 'text', write: (l) => lines.push(l) });
    plain.log(5, 'listening on 127.0.0.1 port 8021');
    expect(lines).toEqual(['<3>exiting on signal 15\n', '<6>#1 ending session\n', 'listening on 127.0.0.1 port 8021\n']);
  });

  it('JSON lines keep their priority too: the prefix comes from pino\'s numeric level', async () => {
    const { Log } = await import('../../src/log.js');
    const lines: string[] = [];
    const j = new Log({ level: 7, format: 'json', write: (l) => lines.push(l), priorityPrefix: true });
    for (const level of [0, 2, 3, 4, 5, 6, 7] as const) j.log(level, `at ${level}`, { event: 'x' });
    j.close();
    expect(lines.map((l) => /^<(\d)>\{/.exec(l)?.[1])).toEqual(['0', '2', '3', '4', '5', '6', '7']);
    const first = JSON.parse(lines[0]!.slice(3)) as Record<string, unknown>;
    expect(first).toMatchObject({ level: 80, label: 'emerg', msg: 'at 0', event: 'x' });
    const plain: string[] = [];
    new Log({ level: 7, format: 'json', write: (l) => plain.push(l) }).log(6, 'no prefix');
    expect(plain[0]).toMatch(/^\{"level":30,"label":"info","time":\d+,"pid":\d+,"hostname":"[^"]*"/);
  });
});
