// The policy file (-f): tokenizer, schema check (file, line and key of every mistake), command-policy
// order, reply-policy precedence (Zorp's), FEAT decisions, and the shipped examples. Table-driven.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decideCommand } from '../../src/policy/commands.js';
import { featureOf, featuresToInsert, keepFeature } from '../../src/policy/feat.js';
import { KNOWN_COMMANDS, MINIMAL_COMMANDS } from '../../src/policy/known.js';
import { defaultPolicy, parsePolicy, PolicyError, tokenize } from '../../src/policy/parse.js';
import { issues, policy } from '../helpers/policy-text.js';
import { decideReply, replyKeys } from '../../src/policy/replies.js';
import { checkWholeConfig } from '../../src/validate.js';
import { parseCommandLine } from '../../src/config.js';

describe('tokenizer', () => {
  it.each([
    ['command RETR accept', [['word', 'command'], ['word', 'RETR'], ['word', 'accept']]],
    ['  feat "AUTH TLS" drop # why', [['word', 'feat'], ['string', 'AUTH TLS'], ['word', 'drop']]],
    ['reply * change 550 "say \\"no\\" \\\\ here"', [['word', 'reply'], ['word', '*'], ['word', 'change'], ['word', '550'], ['string', 'say "no" \\ here']]],
    ['command RETR match /^[^#/]+\\/x$/i accept', [['word', 'command'], ['word', 'RETR'], ['word', 'match'], ['regex', '^[^#/]+\\/x$', 'i'], ['word', 'accept']]],
    ['# only a comment', []],
    ['', []],
    ['profile minimal\r', [['word', 'profile'], ['word', 'minimal']]],
  ])('%j', (line, want) => {
    const t = tokenize(line);
    expect('error' in t).toBe(false);
    expect((t as { kind: string; text: string; flags?: string }[]).map((x) => (x.kind === 'regex' ? [x.kind, x.text, x.flags] : [x.kind, x.text]))).toEqual(want);
  });

  it.each([
    ['feat "AUTH TLS drop', 'unterminated string'],
    ['command X match /abc accept', 'unterminated regular expression'],
    ['feat "A"drop', 'no space after a string'],
  ])('%j -> %s', (line, error) => {
    expect(tokenize(line)).toEqual({ error });
  });
});

describe('schema check: file, line and key of every mistake', () => {
  it.each([
    ['frobnicate yes', 'test.policy:1: frobnicate: unknown key'],
    ['\n\nprofile everything', 'test.policy:3: profile: expected allow-all or minimal, not "everything"'],
    ['profile minimal\nprofile allow-all', 'test.policy:2: profile: given twice (first on line 1)'],
    ['permit_unknown_command maybe', 'test.policy:1: permit_unknown_command: expected yes or no, not "maybe"'],
    ['permit_empty_command', 'test.policy:1: permit_empty_command: expected yes or no'],
    ['command', 'test.policy:1: command: expected VERB [match /regex/] accept | reject [CODE ["text"]] | drop'],
    ['command RE7R accept', 'test.policy:1: command: "RE7R" is not a command verb'],
    ['command RETR allow', 'test.policy:1: command: expected accept, reject or drop, not "allow"'],
    ['command RETR match accept', 'test.policy:1: command: match needs a /regular expression/'],
    ['command RETR match /(/ accept', 'test.policy:1: command: bad regular expression'],
    ['command RETR match /x/g accept', 'test.policy:1: command: regular expression flags may only be i, not "g"'],
    ['command RETR reject 200', 'test.policy:1: command: a rejection needs a 4xx or 5xx code, not "200"'],
    ['command RETR accept now', 'test.policy:1: command: nothing may follow accept'],
    ['command RETR reject 550 "a" "b"', 'test.policy:1: command: expected reject [CODE ["text"]]'],
    ['reply PWD2000 accept', 'test.policy:1: reply: expected KEY accept'],
    ['reply PWD0 accept', 'test.policy:1: reply: reply codes begin with 1 to 5, not "0"'],
    ['reply PWD200 change 200', 'test.policy:1: reply: expected change CODE "text"'],
    ['reply PWD200 change 700 "x"', 'test.policy:1: reply: expected a reply code (100 to 559), not "700"'],
    ['reply PWD200 accept\nreply pwd200 abort', 'test.policy:2: reply: PWD200 is already set on line 1'],
    ['reply * ignore', 'test.policy:1: reply: expected accept, change or abort, not "ignore"'],
    ['feat MLST hide', 'test.policy:1: feat: expected accept, drop or insert, not "hide"'],
    ['feat "AUTH TLS" accept', 'test.policy:1: feat: AUTH TLS cannot be accepted'],
    ['feat PBSZ insert', 'test.policy:1: feat: PBSZ cannot be inserted'],
    ['feat * insert', 'test.policy:1: feat: * cannot be inserted'],
    ['feat MDTM drop\nfeat mdtm accept', 'test.policy:2: feat: mdtm is already set on line 1'],
    ['limits zope', 'test.policy:1: limits: expected zorp (255/32/64), not "zope"'],
    ['max_line_length 0', 'test.policy:1: max_line_length: expected a number from 1 to 498, not "0"'],
    ['max_line_length 499', 'test.policy:1: max_line_length: expected a number from 1 to 498, not "499"'],
    ['max_username_length -1', 'test.policy:1: max_username_length: expected a number from 1 to 498, not "-1"'],
    ['max_password_length', 'test.policy:1: max_password_length: expected a number from 1 to 498'],
    ['data_mode pasv', 'test.policy:1: data_mode: expected keep, passive or active, not "pasv"'],
    ['masquerade_client ftp.example.org', 'test.policy:1: masquerade_client: expected a numeric IPv4 or IPv6 address, not "ftp.example.org"'],
    ['masquerade_server 192.0.2.1\nmasquerade_server 192.0.2.2', 'test.policy:2: masquerade_server: an IPv4 address is already set (192.0.2.1)'],
    ['tcp_keepalive 9000', 'test.policy:1: tcp_keepalive: expected a number from 0 to 7200, not "9000"'],
    ['command RETR reject 550 "two\\nlines"', ''], // a backslash-n is two characters, not a newline: fine
    ['feat "AUTH TLS drop', 'test.policy:1: feat: unterminated string'],
  ])('%j', (text, want) => {
    if (!want) {
      expect(() => policy(text)).not.toThrow();
      return;
    }
    const got = issues(text);
    expect(got.length).toBe(1);
    expect(got[0]).toContain(want);
  });

  it('reports every mistake, not only the first', () => {
    expect(issues('profile x\n# fine\ncommand RETR accept\nbogus\ndata_mode y\n').map((i) => i.split(': ')[0])).toEqual([
      'test.policy:1',
      'test.policy:4',
      'test.policy:5',
    ]);
  });
});

describe('values', () => {
  it('no file: OpenBSD defaults', () => {
    const p = defaultPolicy();
    expect(p).toMatchObject({ file: null, profile: 'allow-all', permitUnknownCommand: true, permitEmptyCommand: true, limits: {}, dataMode: 'keep', tcpKeepalive: 60 });
  });

  it.each([
    ['', { profile: 'allow-all', permitUnknownCommand: true }],
    ['profile minimal', { profile: 'minimal', permitUnknownCommand: false }],
    ['profile minimal\npermit_unknown_command yes', { profile: 'minimal', permitUnknownCommand: true }],
    ['permit_unknown_command no', { profile: 'allow-all', permitUnknownCommand: false }],
  ])('profile and permit_unknown_command: %j', (text, want) => {
    expect(policy(text)).toMatchObject(want);
  });

  it.each([
    ['limits zorp', { line: 255, username: 32, password: 64 }],
    ['max_username_length 20\nlimits zorp', { line: 255, username: 20, password: 64 }],
    ['limits zorp\nmax_line_length 100', { line: 100, username: 32, password: 64 }],
    ['max_password_length 10', { password: 10 }],
  ])('length limits: %j', (text, want) => {
    expect(policy(text).limits).toEqual(want);
  });

  it('masquerade addresses, one per family', () => {
    const p = policy('masquerade_client 203.0.113.9\nmasquerade_client 2001:DB8::9\nmasquerade_server 192.0.2.7');
    expect(p.masqueradeClient).toEqual({ 4: '203.0.113.9', 6: '2001:db8::9' });
    expect(p.masqueradeServer).toEqual({ 4: '192.0.2.7' });
  });
});

describe('command policy: rules in file order, then unknown, then *, then the profile', () => {
  const p = policy(`
profile allow-all
permit_unknown_command no
permit_empty_command no
command RETR match /^[\\w.-]+$/ accept
command RETR reject 550 "file name not allowed"
command SITE drop
command XYZZY accept
command DELE reject
command * match /secret/i reject 553 "no secrets"
`);
  it.each([
    ['RETR', 'file.txt', 'accept', ''],
    ['RETR', '../etc/passwd', 'reject', '550 file name not allowed\r\n'],
    ['SITE', 'EXEC x', 'drop', '421 SITE not allowed by policy, closing control connection.\r\n'],
    ['XYZZY', '', 'accept', ''], // an unknown verb with its own rule
    ['FOO', 'bar', 'reject', '500 Unknown command not allowed by policy\r\n'],
    ['', '', 'reject', '500 Empty command not allowed by policy\r\n'],
    ['DELE', 'x', 'reject', '502 Command not allowed by policy\r\n'],
    ['STOR', 'my-SECRET.txt', 'reject', '553 no secrets\r\n'], // * with match
    ['STOR', 'public.txt', 'accept', ''],
    ['RETR', 'secret.txt', 'accept', ''], // the exact verb's rule comes before *
  ])('%s %j -> %s', (verb, arg, action, reply) => {
    const d = decideCommand(p, verb, arg);
    expect(d.action).toBe(action);
    if (reply) expect('reply' in d ? d.reply : '').toBe(reply);
  });

  it.each([
    ['RETR', 'accept'],
    ['SITE', 'reject'],
    ['STOU', 'reject'],
    ['LPRT', 'reject'],
    ['XYZZY', 'reject'], // unknown, and minimal does not permit unknown commands
    ['EPSV', 'accept'],
  ])('profile minimal: %s -> %s', (verb, action) => {
    expect(decideCommand(policy('profile minimal'), verb, '').action).toBe(action);
  });

  it('profile minimal answers with 502 naming the verb', () => {
    expect(decideCommand(policy('profile minimal'), 'SITE', 'EXEC')).toMatchObject({ reply: '502 SITE not allowed by policy\r\n', why: 'profile minimal' });
  });

  it('command * reject with allow-all rejects every known command without its own rule', () => {
    const q = policy('command USER accept\ncommand PASS accept\ncommand * reject');
    expect(decideCommand(q, 'USER', 'x').action).toBe('accept');
    expect(decideCommand(q, 'LIST', '').action).toBe('reject');
    expect(decideCommand(q, 'FOO', '').action).toBe('accept'); // unknown: permit_unknown_command (yes under allow-all)
  });

  it('without a file everything goes, as on OpenBSD', () => {
    for (const v of ['', 'FOO', 'SITE', 'RETR']) expect(decideCommand(defaultPolicy(), v, 'x').action).toBe('accept');
  });

  it('the minimal profile only holds commands the proxy knows', () => {
    for (const c of MINIMAL_COMMANDS) expect(KNOWN_COMMANDS.has(c)).toBe(true);
  });
});

describe('reply policy: Zorp precedence', () => {
  it.each([
    ['PWD', '257', ['PWD257', 'PWD25', 'PWD2', 'PWD', '*257', '*25', '*2', '*']],
    ['', '220', ['*220', '*22', '*2', '*']],
  ])('keys for %j %s', (verb, code, keys) => {
    expect(replyKeys(verb, code)).toEqual(keys);
  });

  // Each row: the rules present, then the reply (verb, code), then the key that must decide.
  const ALL = ['PWD257', 'PWD25', 'PWD2', 'PWD', '*257', '*25', '*2', '*'];
  it.each([
    [ALL, 'PWD', '257', 'PWD257'],
    [ALL.filter((k) => k !== 'PWD257'), 'PWD', '257', 'PWD25'],
    [['PWD2', 'PWD', '*257'], 'PWD', '257', 'PWD2'],
    [['PWD', '*257'], 'PWD', '257', 'PWD'],
    [['*257', '*25', '*'], 'PWD', '257', '*257'],
    [['*25', '*'], 'PWD', '257', '*25'],
    [['*2', '*'], 'PWD', '257', '*2'],
    [['*'], 'PWD', '257', '*'],
    [['PWD'], 'CWD', '250', null],
    [['PWD5', '*2'], 'PWD', '257', '*2'],
    [['*2', 'PWD'], '', '220', '*2'], // the greeting: only the wildcard applies
  ])('%j, reply %s %s -> %s', (keys, verb, code, want) => {
    const p = policy((keys as string[]).map((k) => `reply ${k} change 250 "from ${k}"`).join('\n'));
    const d = decideReply(p, verb as string, code as string);
    if (want === null) expect(d.then.action).toBe('accept');
    else expect(d).toMatchObject({ key: want, then: { action: 'change', text: `from ${want}` } });
  });

  it('accept and abort', () => {
    const p = policy('reply *5 abort\nreply RETR550 accept');
    expect(decideReply(p, 'RETR', '550').then.action).toBe('accept');
    expect(decideReply(p, 'STOR', '553').then.action).toBe('abort');
    expect(decideReply(p, 'STOR', '226').then.action).toBe('accept');
  });
});

describe('FEAT policy', () => {
  const p = policy('feat MLST drop\nfeat "SITE CHMOD" drop\nfeat SITE accept\nfeat UTF8 insert\nfeat "LANG EN" insert');
  it.each([
    [' MLST size*;modify*;\r\n', false],
    [' MLSD\r\n', true],
    [' AUTH TLS\r\n', false], // always, no TLS mode
    [' auth ssl\r\n', false],
    [' PBSZ\r\n', false],
    [' PROT\r\n', false],
    [' SITE CHMOD\r\n', false], // the longer rule wins
    [' SITE UTIME\r\n', true],
    [' UTF8\r\n', true],
    [' AUTHX\r\n', true], // only AUTH as a whole word
  ])('%j kept: %s', (line, kept) => {
    expect(keepFeature(p, featureOf(line)!)).toBe(kept);
  });

  it('feat * drop keeps only what is accepted or inserted', () => {
    const q = policy('feat * drop\nfeat SIZE accept\nfeat MDTM insert');
    expect(['SIZE', 'MDTM', 'MLST', 'REST STREAM'].map((f) => keepFeature(q, f))).toEqual([true, true, false, false]);
  });

  it('inserts only what the server did not list', () => {
    expect(featuresToInsert(p, new Set(['UTF8']))).toEqual(['LANG EN']);
    expect(featuresToInsert(p, new Set())).toEqual(['UTF8', 'LANG EN']);
  });

  it.each([
    ['211-Features:\r\n', null],
    [' MDTM\r\n', 'MDTM'],
    [' REST STREAM\n', 'REST STREAM'],
    ['211 End\r\n', null],
  ])('featureOf(%j) = %j', (line, want) => {
    expect(featureOf(line)).toBe(want);
  });
});

describe('--check-config', () => {
  const files: Record<string, string> = { 'good.policy': 'profile minimal\nlimits zorp\n', 'bad.policy': 'profile x\nfeat PROT accept\n' };
  const read = (f: string): string => {
    if (!(f in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return files[f]!;
  };
  it.each([
    [undefined, 0, /no policy file \(-f\): OpenBSD behaviour/],
    ['good.policy', 0, /good\.policy: OK \(profile minimal, 0 command rule\(s\), 0 reply rule\(s\), 0 feat rule\(s\), limits 255\/32\/64, data_mode keep\)/],
    ['bad.policy', 1, /^ftp-proxy: bad\.policy:1: profile: .*\nbad\.policy:2: feat: PROT cannot be accepted.*\nbad\.policy: 2 error\(s\), not started\n$/],
    ['gone.policy', 1, /cannot read policy file gone\.policy: ENOENT/],
  ])('%s -> exit %i', async (file, exit, text) => {
    const c = parseCommandLine(file === undefined ? [] : ['-f', file]);
    if (!('config' in c)) throw new Error(c.stderr);
    const r = await checkWholeConfig(c.config, { readFile: read });
    expect(r.exit).toBe(exit);
    expect(r.stdout ?? r.stderr).toMatch(text);
  });
});

describe('shipped policy examples', () => {
  const dir = new URL('../../policy-examples/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.policy'));
  it('there are some', () => {
    expect(files).toContain('minimal.policy');
  });
  it.each(files)('%s passes the schema check', (f) => {
    const p = parsePolicy(readFileSync(new URL(f, dir), 'utf8'), f);
    expect(p instanceof PolicyError ? p.message : '').toBe('');
  });
});
