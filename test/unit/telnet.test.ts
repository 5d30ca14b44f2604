// Telnet bytes in command lines (issue 11, item 2), the long-address commands LPRT/LPSV (item 6), and
// the escaping of client bytes in log lines (item 10): the pure checks, then the state machine.
import { describe, expect, it } from 'vitest';
import { type Action, FtpControl } from '../../src/ftp/control.js';
import { leadingTelnet, telnetProblem } from '../../src/ftp/telnet.js';
import { parsePolicy, type Policy, PolicyError } from '../../src/policy/parse.js';
import { logIn, V4 } from '../helpers/control.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const text = (a: Action): string => ('data' in a ? a.data.toString('latin1') : '');
const toServer = (as: Action[]): string[] => as.filter((a) => a.type === 'toServer').map(text);
const toClient = (as: Action[]): string[] => as.filter((a) => a.type === 'toClient').map(text);
const logs = (as: Action[]) => as.filter((a): a is Extract<Action, { type: 'log' }> => a.type === 'log');

function policy(t: string): Policy {
  const p = parsePolicy(t, 'unit.policy');
  if (p instanceof PolicyError) throw new Error(p.message);
  return p;
}

function loggedIn(opts: { policy?: string; anonymousOnly?: boolean } = {}): FtpControl {
  return logIn(
    new FtpControl(7, V4, {
      anonymousOnly: false,
      debug: false,
      firewallName: 'fake',
      ...(opts.policy !== undefined ? { policy: policy(opts.policy) } : {}),
    }),
  );
}

describe('leadingTelnet and telnetProblem', () => {
  it.each([
    // line, bytes of leading Telnet, problem
    ['USER bob\r\n', 0, null],
    ['NOOP\n', 0, null],
    ['\xff\xf4\xff\xf2ABOR\r\n', 4, null], // IAC IP IAC DM before ABOR
    ['\xff\xf4ABOR\r\n', 2, null],
    ['\xff\xfb\x01NOOP\r\n', 3, null], // IAC WILL ECHO
    ['\xff\xf1\xff\xf1NOOP\r\n', 4, null],
    ['U\xff\xf1SER root\r\n', 0, 'IAC'], // BSD ftpds read USER root
    ['D\xff\xf1ELE x\r\n', 0, 'IAC'],
    ['RETR \xff\xf1.profile\r\n', 0, 'IAC'],
    ['RETR x\xff\xff\r\n', 0, 'IAC'], // IAC IAC: a literal 0xff, read differently by servers that don't
    ['\xff\xffUSER root\r\n', 0, 'IAC'],
    ['\xffDELE x\r\n', 0, 'IAC'], // a stray IAC eats the D on BSD
    ['\xff\xf4\xffABOR\r\n', 2, 'IAC'], // IAC A: BSD reads BOR, proftpd \xffABOR
    ['\xff\xfbDELE x\r\n', 0, 'IAC'], // WILL with a printable option: two bytes or three?
    ['\xff\xfb\nDELE x\r\n', 0, 'IAC'], // the option would eat the line ending
    ['NOOP\xff\r\n', 0, 'IAC'],
    ['\xff', 0, 'IAC'],
    ['CWD a\rDELE b\r\n', 0, 'CR'], // a server splitting at CR reads two commands
    ['NOOP\r\r\n', 0, 'CR'],
    ['\rNOOP\r\n', 0, 'CR'],
    ['STOR a\xfe\xe9\r\n', 0, null], // other 8-bit bytes (UTF-8, Latin-1 names) are fine
  ])('%j: %i leading byte(s), problem %s', (line, lead, problem) => {
    expect(leadingTelnet(b(line))).toBe(lead);
    const p = telnetProblem(b(line));
    if (problem === null) expect(p).toBeNull();
    else expect(p).toContain(problem);
  });
});

describe('a line the server would read differently is refused', () => {
  it.each([
    ['-A', { anonymousOnly: true }, 'U\xff\xf1SER root\r\n'],
    ['command DELE reject', { policy: 'command DELE reject' }, 'D\xff\xf1ELE x\r\n'],
    ['a dot-file rule', { policy: 'command RETR match /^\\./ reject\n' }, 'RETR \xff\xf1.profile\r\n'],
    ['command DELE reject, bare CR', { policy: 'command DELE reject' }, 'NOOP\rDELE x\r\n'],
  ])('%s: %j gets a 500, nothing reaches the server, the session goes on', (_what, opts, line) => {
    const m = loggedIn(opts);
    const out = m.clientLine(b(line));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)).toEqual(['500 Command line refused: Telnet bytes or a CR inside it, not sent to the server\r\n']);
    const l = logs(out);
    expect(l).toHaveLength(1);
    expect(l[0]!.event).toBe('telnet-refused');
    expect(l[0]!.message).toMatch(/^#7 command line refused: a (Telnet IAC byte after the start of the line|CR inside the line): '/);
    expect(l[0]!.message).not.toMatch(/[\r\n\xff]/);
    expect(toServer(m.clientLine(b('NOOP\r\n')))).toEqual(['NOOP\r\n']);
  });

  it('ABOR after IAC IP IAC DM still goes to the server as it came', () => {
    const m = loggedIn({ policy: 'command DELE reject' });
    expect(toServer(m.clientLine(b('\xff\xf4\xff\xf2ABOR\r\n')))).toEqual(['\xff\xf4\xff\xf2ABOR\r\n']);
  });

  it('a leading sequence does not hide a refused verb', () => {
    const m = loggedIn({ policy: 'command DELE reject 550 "no"' });
    expect(toClient(m.clientLine(b('\xff\xf4DELE x\r\n')))).toEqual(['550 no\r\n']);
  });
});

describe('LPRT and LPSV', () => {
  it.each([
    ['LPRT 4,4,192,168,1,10,2,4,1\r\n', '502 LPRT not supported through ftp-proxy, use EPRT or PORT\r\n'],
    ['lpsv\r\n', '502 LPSV not supported through ftp-proxy, use EPSV or PASV\r\n'],
  ])('%j is answered locally with a 502 and a log line', (line, reply) => {
    const m = loggedIn();
    const out = m.clientLine(b(line));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)).toEqual([reply]);
    expect(logs(out).map((a) => a.event)).toEqual(['long-refused']);
    expect(m.pendingCommands).toBe(0);
  });
});

describe('client bytes in log lines are escaped', () => {
  it('a verb with ESC in a reply-policy line', () => {
    const m = loggedIn({ policy: 'reply *500 change 500 "no"\nreply *200 abort' });
    m.clientLine(b('X\x1b[2J\r\n'));
    const changed = logs(m.serverLine(b('500 what\r\n')));
    expect(changed.map((a) => a.message)).toEqual(['#7 reply 500 to X\\^[[2J changed to 500 by policy (reply *500 on policy line 1)']);
    expect(changed[0]!.fields).toMatchObject({ command: 'X\\^[[2J' });
    m.clientLine(b('Y\x1b\x07\r\n'));
    const aborted = logs(m.serverLine(b('200 ok\r\n')));
    expect(aborted[0]!.message).toBe('#7 reply 200 to Y\\^[\\a refused by policy, ending session (reply *200 on policy line 2)');
  });

  it('a preliminary reply not changed: the verb is escaped too', () => {
    const m = loggedIn({ policy: 'reply *1 change 550 "no"' });
    m.clientLine(b('\x1bRETR\r\n'));
    const out = logs(m.serverLine(b('150 go\r\n')));
    expect(out[0]!.message).toMatch(/^#7 reply 150 to \\\^\[RETR not changed/);
  });

  it('a CR (and ESC) in a command line reach no log raw', () => {
    const m = loggedIn();
    const out = logs(m.clientLine(b('X\x1b]0;pwned\x07\rY\r\n')));
    expect(out).toHaveLength(1);
    expect(out[0]!.message).toBe("#7 command line refused: a CR inside the line: 'X\\^[]0;pwned\\a\\rY\\r\\n'");
  });
});
