// The command gate (src/ftp/gate.ts), table-driven: which lines pass, which get which local reply.
import { describe, expect, it } from 'vitest';
import { gateCommand } from '../../src/ftp/gate.js';
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
