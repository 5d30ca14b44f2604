// The command gate (src/ftp/gate.ts), table-driven: which lines pass, which get which local reply.
import { describe, expect, it } from 'vitest';
import { gateCommand } from '../../src/ftp/gate.js';
import { FeatRewriter, gateReply } from '../../src/ftp/reply-gate.js';
import { defaultPolicy, parsePolicy, type Policy, PolicyError } from '../../src/policy/parse.js';

function policy(t: string): Policy {
  const p = parsePolicy(t, 'g.policy');
  if (p instanceof PolicyError) throw new Error(p.message);
  return p;
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('gateCommand', () => {
  it.each([
    // line, policy text ('' = none), -A, expected reply (null = passes), close?
    ['NOOP\r\n', '', false, null, false],
    ['retr x\r\n', '', false, null, false],
    ['USER bob\r\n', '', true, '500 Only anonymous FTP allowed\r\n', false],
    ['USER\tanonymous\r\n', '', true, null, false],
    ['AUTH TLS\r\n', '', false, '504 AUTH not supported through ftp-proxy, use plain FTP\r\n', false],
    ['LPSV\r\n', '', false, '502 LPSV not supported through ftp-proxy, use EPSV or PASV\r\n', false],
    ['D\xff\xf1ELE x\r\n', '', false, '500 Command line refused: Telnet bytes or a CR inside it, not sent to the server\r\n', false],
    ['DELE x\r\n', 'command DELE reject 550 "no"', false, '550 no\r\n', false],
    ['SITE x\r\n', 'command SITE drop', false, '421 SITE not allowed by policy, closing control connection.\r\n', true],
    [`NOOP ${'x'.repeat(20)}\r\n`, 'max_line_length 10', false, '500 Command line too long (more than 10 bytes), not sent to the server\r\n', false],
    [`PASS ${'p'.repeat(9)}\r\n`, 'max_password_length 8', false, '501 Password too long (more than 8 characters)\r\n', false],
  ])('%j (policy %j, -A %s) -> %j', (line, text, anon, reply, close) => {
    const v = gateCommand(b(line), text ? policy(text) : defaultPolicy(), anon);
    if (reply === null) {
      expect(v.pass).toBe(true);
      return;
    }
    expect(v).toMatchObject({ pass: false, reply });
    expect('close' in v && v.close !== undefined).toBe(close);
  });

  it('a passing line carries its verb (upper case) and argument', () => {
    expect(gateCommand(b('\xff\xf4\xff\xf2abor\r\n'), defaultPolicy(), false)).toEqual({ pass: true, verb: 'ABOR', arg: '' });
    expect(gateCommand(b('CWD a b\r\n'), defaultPolicy(), false)).toEqual({ pass: true, verb: 'CWD', arg: 'a b' });
  });
});

describe('gateReply and FeatRewriter', () => {
  it.each([
    ['reply PWD257 change 257 "/"', 'PWD', '257', 'change', '257 /\r\n'],
    ['reply SYST abort', 'SYST', '215', 'abort', '421 Reply not allowed by policy, closing control connection.\r\n'],
    ['reply RETR1 change 550 "no"', 'RETR', '150', 'relay', undefined], // a preliminary reply stays one
    ['reply *220 change 220 "FTP"', '', '220', 'change', '220 FTP\r\n'],
    ['', 'NOOP', '200', 'relay', undefined],
  ])('%j: %s %s -> %s', (text, verb, code, action, out) => {
    const v = gateReply(text ? policy(text) : defaultPolicy(), verb, code);
    expect(v.action).toBe(action);
    if (v.action === 'change') expect(v.text).toBe(out);
    if (v.action === 'abort') expect(v.reply).toBe(out);
  });

  it('FEAT: dropped features go, inserted ones come before the last line; a one-line 211 grows', () => {
    const p = policy('feat MLST drop\nfeat XCRC insert\n');
    const f = new FeatRewriter(p);
    expect(f.line(b(' MLST type*;size*;\r\n'), ' MLST type*;size*;\r\n', false)).toEqual([]);
    expect(f.line(b(' SIZE\r\n'), ' SIZE\r\n', false).map(String)).toEqual([' SIZE\r\n']);
    expect(f.line(b('211 End\r\n'), '211 End\r\n', true).map(String)).toEqual([' XCRC\r\n', '211 End\r\n']);
    expect(String(new FeatRewriter(p).oneLine(b('211 no features\r\n')))).toBe('211-no features\r\n XCRC\r\n211 End\r\n');
    expect(new FeatRewriter(defaultPolicy()).oneLine(b('211 no features\r\n'))).toBeNull();
  });
});
