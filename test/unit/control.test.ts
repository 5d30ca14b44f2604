// The control-channel state machine, driven line by line (spec section 8 scenarios that concern the
// protocol, and the places where we differ from OpenBSD on purpose).
import { describe, expect, it } from 'vitest';
import { type Action, type ControlOptions, FtpControl, type SessionAddresses, splitCommand } from '../../src/ftp/control.js';
import { LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO } from '../../src/levels.js';
import { tlsCommand } from '../../src/ftp/tls-commands.js';
import { logIn, V4, V6 } from '../helpers/control.js';
import { policy } from '../helpers/policy-text.js';


function machine(opts: Partial<ControlOptions> = {}, addr: SessionAddresses = V4): FtpControl {
  return new FtpControl(7, addr, { anonymousOnly: false, debug: false, firewallName: 'nftables', ...opts });
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const text = (a: Action): string => ('data' in a ? a.data.toString('latin1') : '');
const toServer = (as: Action[]): string[] => as.filter((a) => a.type === 'toServer').map(text);
const toClient = (as: Action[]): string[] => as.filter((a) => a.type === 'toClient').map(text);
const negotiations = (as: Action[]) => as.filter((a): a is Extract<Action, { type: 'negotiate' }> => a.type === 'negotiate');
type LogAction = Extract<Action, { type: 'log' }>;
const logActions = (as: Action[]) => as.filter((a): a is LogAction => a.type === 'log');
/** Log actions as the text format sees them (the JSON events are checked on their own below). */
const logs = (as: Action[]) => logActions(as).map(({ type, level, message }) => ({ type, level, message }));

/** A machine past the greeting and login, so the command FIFO is empty. */
function loggedIn(opts: Partial<ControlOptions> = {}, addr: SessionAddresses = V4): FtpControl {
  return logIn(machine(opts, addr));
}

describe('relaying', () => {
  it('forwards ordinary lines byte for byte, CRLF and bare LF alike', () => {
    const m = machine();
    expect(toClient(m.serverLine(b('220 hello\r\n')))).toEqual(['220 hello\r\n']);
    expect(toServer(m.clientLine(b('USER x\n')))).toEqual(['USER x\n']);
    expect(toServer(m.clientLine(b('NOOP\r\n')))).toEqual(['NOOP\r\n']);
    expect(toServer(m.clientLine(b('X\r\n')))).toEqual(['X\r\n']);
  });

  it.each([['SITE CHMOD 644 x\r\n'], ['FOO bar\r\n'], ['EPSV ALL\r\n'], ['\xff\xf4\xff\xf2ABOR\r\n'], ['\xff\xf4ABOR\r\n']])(
    'forwards %j unmodified without a negotiation',
    (line) => {
      const m = loggedIn();
      const out = m.clientLine(b(line));
      expect(toServer(out)).toEqual([line]);
      expect(negotiations(out)).toEqual([]);
    },
  );

  it('does not rewrite the 200 reply to EPSV ALL', () => {
    const m = loggedIn();
    m.clientLine(b('EPSV ALL\r\n'));
    const out = m.serverLine(b('200 EPSV ALL ok\r\n'));
    expect(toClient(out)).toEqual(['200 EPSV ALL ok\r\n']);
    expect(negotiations(out)).toEqual([]);
  });

  it('logs every line at DEBUG with the session id (-D7), and nothing when debug is off', () => {
    const m = machine({ debug: true });
    const l1 = logs(m.serverLine(b('220 hi\r\n')));
    expect(l1).toEqual([{ type: 'log', level: LOG_DEBUG, message: '#7 server: 220 hi\\r\\n' }]);
    const l2 = logs(m.clientLine(b('USER a\\b\r\n')));
    expect(l2[0]?.message).toBe('#7 client: USER a\\\\b\\r\\n');
    const quiet = machine();
    expect(logs(quiet.serverLine(b('220 hi\r\n')))).toEqual([]);
  });
});

describe('active mode (PORT/EPRT)', () => {
  it('holds PORT until the pinhole is in, then sends the proxy address and port (scenario 10)', () => {
    const m = loggedIn();
    const out = m.clientLine(b('PORT 192,168,1,10,156,187\r\n'));
    expect(toServer(out)).toEqual([]);
    const [n] = negotiations(out);
    expect(n?.negotiation).toEqual({ kind: 'active', command: 'PORT', clientPort: 40123 });
    expect(m.clientBlocked).toBe(true);
    const done = m.negotiationDone(n!.id, { ok: true, proxyPort: 55555 });
    expect(toServer(done)).toEqual(['PORT 203,0,113,5,217,3\r\n']);
    expect(logs(done)).toContainEqual({ type: 'log', level: LOG_INFO, message: '#7 active: server to client port 40123 via port 55555' });
    expect(m.clientBlocked).toBe(false);
  });

  it('ignores the address named in PORT: a third host changes nothing (scenario 17)', () => {
    const m = loggedIn();
    const [n] = negotiations(m.clientLine(b('PORT 10,9,9,9,156,187\r\n')));
    expect(n?.negotiation).toEqual({ kind: 'active', command: 'PORT', clientPort: 40123 });
  });

  it.each([
    ['EPRT |1|192.168.1.10|40123|\r\n', 'EPRT |1|203.0.113.5|55555|\r\n'],
    ['EPRT |2|2001:db8::10|40123|\r\n', 'EPRT |1|203.0.113.5|55555|\r\n'],
    ['eprt !1!192.168.1.10!40123!\r\n', 'EPRT |1|203.0.113.5|55555|\r\n'],
  ])('rewrites %j to the proxy family and address (scenario 11)', (line, expected) => {
    const m = loggedIn();
    const [n] = negotiations(m.clientLine(b(line)));
    expect(n?.negotiation).toMatchObject({ kind: 'active', command: 'EPRT', clientPort: 40123 });
    expect(toServer(m.negotiationDone(n!.id, { ok: true, proxyPort: 55555 }))).toEqual([expected]);
  });

  it('writes EPRT |2| for an IPv6 proxy address', () => {
    const m = loggedIn({}, V6);
    const [n] = negotiations(m.clientLine(b('EPRT |2|2001:db8::10|40123|\r\n')));
    expect(toServer(m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 }))).toEqual(['EPRT |2|2001:db8::1|61000|\r\n']);
  });

  it.each([
    ['PORT 192,168,1,10,0,21\r\n', '500 '],
    ['PORT 192,168,1,10,3,255\r\n', '500 '],
    ['PORT 1,2,3\r\n', '501 '],
    ['PORT 1,2,3,4,300,1\r\n', '501 '],
    ['PORT\r\n', '501 '],
    ['EPRT |1|192.168.1.10|21|\r\n', '500 '],
    ['EPRT |3|x|40000|\r\n', '501 '],
    ['EPRT garbage\r\n', '501 '],
  ])('refuses %j with an FTP error, a CRIT log and no pinhole; the session goes on (scenario 16)', (line, code) => {
    const m = loggedIn();
    const out = m.clientLine(b(line));
    expect(negotiations(out)).toEqual([]);
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)[0]?.startsWith(code)).toBe(true);
    expect(logs(out)).toContainEqual(expect.objectContaining({ level: LOG_CRIT, message: expect.stringMatching(/^#7 bad port in '/) }));
    expect(toServer(m.clientLine(b('NOOP\r\n')))).toEqual(['NOOP\r\n']);
  });

  it('answers 425 and logs CRIT when the firewall fails; nothing reaches the server', () => {
    const m = loggedIn();
    const [n] = negotiations(m.clientLine(b('PORT 192,168,1,10,156,187\r\n')));
    const out = m.negotiationDone(n!.id, { ok: false, error: 'Operation not permitted' });
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)[0]).toMatch(/^425 /);
    expect(logs(out)).toContainEqual({ type: 'log', level: LOG_CRIT, message: '#7 nftables operation failed: Operation not permitted' });
  });

  it('queues client lines behind a PORT in flight and sends them after it, in order', () => {
    const m = loggedIn();
    const [n] = negotiations(m.clientLine(b('PORT 192,168,1,10,156,187\r\n')));
    expect(m.clientLine(b('RETR f\r\n'))).toEqual([]);
    expect(m.clientLine(b('QUIT\r\n'))).toEqual([]);
    expect(m.queuedLines).toBe(2);
    expect(toServer(m.negotiationDone(n!.id, { ok: true, proxyPort: 50000 }))).toEqual([
      'PORT 203,0,113,5,195,80\r\n',
      'RETR f\r\n',
      'QUIT\r\n',
    ]);
  });
});

describe('passive mode (PASV/EPSV)', () => {
  it('rewrites a 227 to the original server and the proxy port, dropping the server text (scenario 12)', () => {
    const m = loggedIn();
    expect(toServer(m.clientLine(b('PASV\r\n')))).toEqual(['PASV\r\n']);
    const out = m.serverLine(b('227 Entering Passive Mode (10,1,2,3,195,80). Have fun\r\n'));
    expect(toClient(out)).toEqual([]);
    const [n] = negotiations(out);
    expect(n?.negotiation).toEqual({ kind: 'passive', command: 'PASV', serverPort: 50000 });
    const done = m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 });
    expect(toClient(done)).toEqual(['227 Entering Passive Mode (198,51,100,21,238,72)\r\n']);
    expect(logs(done)).toContainEqual({ type: 'log', level: LOG_INFO, message: '#7 passive: client to server port 50000 via port 61000' });
  });

  it.each([
    ['info on (the default)', {}, 1],
    ['info off (-D below 6)', { info: false }, 0],
  ])('each negotiation logs at INFO only when INFO is wanted: %s', (_name, opts: Partial<ControlOptions>, count) => {
    const m = loggedIn(opts);
    m.clientLine(b('PASV\r\n'));
    const [n] = negotiations(m.serverLine(b('227 Entering Passive Mode (10,1,2,3,195,80)\r\n')));
    const passive = m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 });
    expect(toClient(passive)).toEqual(['227 Entering Passive Mode (198,51,100,21,238,72)\r\n']);
    expect(logActions(passive).filter((a) => a.event === 'passive')).toHaveLength(count);
    const [a] = negotiations(m.clientLine(b('PORT 10,1,2,3,195,80\r\n')));
    const active = m.negotiationDone(a!.id, { ok: true, proxyPort: 61000 });
    expect(toServer(active)).toHaveLength(1);
    expect(logActions(active).filter((x) => x.event === 'active')).toHaveLength(count);
  });

  it('rewrites a 229 to the proxy port (scenario 13)', () => {
    const m = loggedIn();
    m.clientLine(b('EPSV\r\n'));
    const [n] = negotiations(m.serverLine(b('229 Entering Extended Passive Mode (|||50000|)\r\n')));
    expect(n?.negotiation).toEqual({ kind: 'passive', command: 'EPSV', serverPort: 50000 });
    expect(toClient(m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 }))).toEqual([
      '229 Entering Extended Passive Mode (|||61000|)\r\n',
    ]);
  });

  it.each([['425 no\r\n'], ['500 not understood\r\n'], ['421 bye\r\n'], ['227 but for a different code is fine?\r\n']])(
    'forwards a non-227 answer or an unparsable one without rules: %j (scenario 14)',
    (reply) => {
      const m = loggedIn();
      m.clientLine(b('PASV\r\n'));
      const out = m.serverLine(b(reply));
      expect(negotiations(out)).toEqual([]);
      if (reply.startsWith('227')) expect(toClient(out)[0]).toMatch(/^425 /);
      else expect(toClient(out)).toEqual([reply]);
    },
  );

  it('understands a multi-line 227 and replaces the whole reply', () => {
    const m = loggedIn();
    m.clientLine(b('PASV\r\n'));
    expect(m.serverLine(b('227-Entering Passive Mode\r\n'))).toEqual([]);
    expect(m.serverLine(b(' (198,51,100,21,195,80)\r\n'))).toEqual([]);
    const [n] = negotiations(m.serverLine(b('227 OK\r\n')));
    expect(n?.negotiation).toMatchObject({ serverPort: 50000 });
    expect(toClient(m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 }))).toEqual([
      '227 Entering Passive Mode (198,51,100,21,238,72)\r\n',
    ]);
  });

  it('relays other multi-line replies line by line', () => {
    const m = loggedIn();
    m.clientLine(b('HELP\r\n'));
    expect(toClient(m.serverLine(b('214-The following commands\r\n')))).toEqual(['214-The following commands\r\n']);
    expect(toClient(m.serverLine(b(' USER PASS\r\n')))).toEqual([' USER PASS\r\n']);
    expect(toClient(m.serverLine(b('214 Direct comments\r\n')))).toEqual(['214 Direct comments\r\n']);
  });

  it('keeps a pipelined PASV working when another command follows before the 227 (differs from OpenBSD)', () => {
    const m = loggedIn();
    m.clientLine(b('PASV\r\n'));
    m.clientLine(b('RETR f\r\n'));
    const [n] = negotiations(m.serverLine(b('227 Entering Passive Mode (198,51,100,21,195,80)\r\n')));
    expect(n).toBeDefined();
    // The server's next reply waits behind the rewritten 227.
    expect(m.serverLine(b('150 Opening\r\n'))).toEqual([]);
    const out = m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 });
    expect(toClient(out)).toEqual(['227 Entering Passive Mode (198,51,100,21,238,72)\r\n', '150 Opening\r\n']);
  });

  it.each([
    ['227 Entering Passive Mode (198,51,100,21,0,21)\r\n'],
    ['227 Entering Passive Mode (198,51,100,21,3,255)\r\n'],
    ['227 no numbers here\r\n'],
  ])('refuses a low or unparsable port in %j with 425 and a CRIT log (scenario 16)', (reply) => {
    const m = loggedIn();
    m.clientLine(b('PASV\r\n'));
    const out = m.serverLine(b(reply));
    expect(negotiations(out)).toEqual([]);
    expect(toClient(out)[0]).toMatch(/^425 /);
    expect(logs(out)).toContainEqual(expect.objectContaining({ level: LOG_CRIT, message: expect.stringMatching(/^#7 bad port in /) }));
    expect(toClient(m.clientLine(b('NOOP\r\n')))).toEqual([]);
    expect(toClient(m.serverLine(b('200 ok\r\n')))).toEqual(['200 ok\r\n']);
  });

  it('replaces the 227 with 425 when the firewall fails', () => {
    const m = loggedIn();
    m.clientLine(b('PASV\r\n'));
    const [n] = negotiations(m.serverLine(b('227 (198,51,100,21,195,80)\r\n')));
    const out = m.negotiationDone(n!.id, { ok: false, error: 'boom' });
    expect(toClient(out)[0]).toMatch(/^425 /);
    expect(logs(out)).toContainEqual({ type: 'log', level: LOG_CRIT, message: '#7 nftables operation failed: boom' });
  });

  it('ignores a result for an unknown negotiation id', () => {
    const m = loggedIn();
    expect(m.negotiationDone(99, { ok: true, proxyPort: 50000 })).toEqual([]);
  });
});

describe('IPv6 sessions (-6)', () => {
  it.each([['PASV\r\n'], ['PORT 1,2,3,4,156,187\r\n']])('refuses %j with 502 and the OpenBSD CRIT message (scenario 18)', (line) => {
    const m = loggedIn({}, V6);
    const out = m.clientLine(b(line));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)[0]).toMatch(/^502 /);
    expect(logs(out)).toContainEqual({ type: 'log', level: LOG_CRIT, message: 'PASV and PORT not allowed with IPv6' });
  });

  it('passes EPSV and rewrites its 229', () => {
    const m = loggedIn({}, V6);
    expect(toServer(m.clientLine(b('EPSV\r\n')))).toEqual(['EPSV\r\n']);
    expect(negotiations(m.serverLine(b('229 (|||50000|)\r\n')))).toHaveLength(1);
  });

  it('refuses every negotiation when client and server families differ', () => {
    const m = loggedIn({}, { ...V4, client: '2001:db8::10', originalServer: '2001:db8::1', clientFamily: 6 });
    for (const line of ['EPSV\r\n', 'EPRT |2|2001:db8::10|40000|\r\n']) {
      const out = m.clientLine(b(line));
      expect(negotiations(out)).toEqual([]);
      expect(toClient(out)[0]).toMatch(/^425 /);
    }
  });
});

describe('replies the proxy makes itself', () => {
  it('-A: USER bob gets 500, is not forwarded, session stays; anonymous and ftp pass (scenario 29)', () => {
    const m = machine({ anonymousOnly: true });
    m.serverLine(b('220 hi\r\n'));
    const out = m.clientLine(b('USER bob\r\n'));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)).toEqual(['500 Only anonymous FTP allowed\r\n']);
    expect(toServer(m.clientLine(b('user ANONYMOUS\r\n')))).toEqual(['user ANONYMOUS\r\n']);
    expect(toServer(m.clientLine(b('USER ftp\r\n')))).toEqual(['USER ftp\r\n']);
  });

  it('refuses AUTH TLS/SSL with 504 so clients fall back to plain FTP', () => {
    const m = loggedIn();
    for (const line of ['AUTH TLS\r\n', 'auth ssl\r\n']) {
      const out = m.clientLine(b(line));
      expect(toServer(out)).toEqual([]);
      expect(toClient(out)[0]).toMatch(/^504 /);
    }
  });

  it('keeps a local reply behind the server replies still owed (pipelining)', () => {
    const m = machine({ anonymousOnly: true });
    m.serverLine(b('220 hi\r\n'));
    expect(toServer(m.clientLine(b('SYST\r\n')))).toEqual(['SYST\r\n']);
    // USER bob is answered locally, but only after SYST's reply.
    expect(toClient(m.clientLine(b('USER bob\r\n')))).toEqual([]);
    expect(toServer(m.clientLine(b('NOOP\r\n')))).toEqual(['NOOP\r\n']);
    expect(toClient(m.serverLine(b('215 UNIX Type: L8\r\n')))).toEqual(['215 UNIX Type: L8\r\n', '500 Only anonymous FTP allowed\r\n']);
    expect(toClient(m.serverLine(b('200 NOOP ok\r\n')))).toEqual(['200 NOOP ok\r\n']);
  });

  it('waits for the greeting before a local reply; preliminary replies do not complete a command', () => {
    const m = machine({ anonymousOnly: true });
    expect(toClient(m.clientLine(b('USER bob\r\n')))).toEqual([]);
    expect(toClient(m.serverLine(b('120 wait\r\n')))).toEqual(['120 wait\r\n']);
    expect(toClient(m.serverLine(b('220 ready\r\n')))).toEqual(['220 ready\r\n', '500 Only anonymous FTP allowed\r\n']);
  });
});

describe('line errors', () => {
  it.each([
    ['client', /^421 Command line too long/, '#7 client command too long or not clean'],
    ['server', /^421 Server reply too long/, '#7 server reply too long or not clean'],
  ] as const)('a bad %s line ends the session with 421 and an ERR log (scenarios 26, 27)', (side, reply, msg) => {
    const m = loggedIn();
    const out = m.lineError(side, 'too-long');
    expect(toClient(out)[0]).toMatch(reply);
    expect(logs(out)).toContainEqual({ type: 'log', level: LOG_ERR, message: msg });
    expect(out.at(-1)).toMatchObject({ type: 'close' });
    expect(m.clientLine(b('NOOP\r\n'))).toEqual([]);
  });
});

describe('splitCommand', () => {
  it.each([
    ['USER bob\r\n', 'USER', 'bob'],
    ['pasv\r\n', 'PASV', ''],
    ['PASV\n', 'PASV', ''],
    ['EPSV ALL\r\n', 'EPSV', 'ALL'],
    ['\xff\xf4\xff\xf2ABOR\r\n', 'ABOR', ''],
    ['\xff\xfb\x01NOOP\r\n', 'NOOP', ''],
    ['PORT 1,2,3,4,5,6\r', 'PORT', '1,2,3,4,5,6'],
    // The line ending's bytes: "\r\n" or "\n" go first, then one more CR off the verb or the argument.
    ['NOOP\r\r\n', 'NOOP', ''],
    ['CWD a\r\r\n', 'CWD', 'a'],
    ['NOOP\r\r', 'NOOP\r', ''],
    ['CWD a\r\r', 'CWD', 'a\r'],
    ['CWD\ta b\r\n', 'CWD', 'a b'],
    ['CWD  x\r\n', 'CWD', ' x'],
    ['\r\n', '', ''],
    ['\n', '', ''],
    ['\xff\xf4\r\n', '', ''],
    ['\xff\xfb\x01\n', '', ''],
    ['stor \xe9t\xe9\r\n', 'STOR', '\xe9t\xe9'],
  ])('%j -> %s %j', (line, verb, arg) => {
    expect(splitCommand(b(line))).toEqual({ verb, arg });
  });
});

describe('bounded memory', () => {
  it(`ends the session with 421 when a client has ${1000} commands without a reply`, async () => {
    const { MAX_PENDING } = await import('../../src/ftp/control.js');
    const m = loggedIn();
    for (let i = 0; i < MAX_PENDING - 1; i++) expect(toServer(m.clientLine(b('NOOP\r\n')))).toEqual(['NOOP\r\n']);
    expect(m.pendingCommands).toBe(MAX_PENDING - 1);
    const last = m.clientLine(b('NOOP\r\n'));
    expect(toServer(last)).toEqual(['NOOP\r\n']);
    const over = m.clientLine(b('NOOP\r\n'));
    expect(toServer(over)).toEqual([]);
    expect(toClient(over)[0]).toMatch(/^421 Too many commands/);
    expect(over.at(-1)).toMatchObject({ type: 'close' });
  });
});

describe('found by the fuzz test', () => {
  it('a 501 for a bad EPRT does not echo the client bytes', () => {
    const m = loggedIn();
    const out = m.clientLine(b(`EPRT |${'\xe9A\x1b'.repeat(100)}|1.2.3.4|5000|\r\n`));
    const [reply] = toClient(out);
    expect(reply).toBe('501 Syntax error in EPRT argument (unsupported address family)\r\n');
  });

  it('a local reply queued during a preliminary reply goes out when that reply ends', () => {
    const m = machine();
    m.serverLine(b('220 hi\r\n'));
    expect(toClient(m.serverLine(b('150-unasked\r\n')))).toEqual(['150-unasked\r\n']);
    expect(toClient(m.clientLine(b('AUTH TLS\r\n')))).toEqual([]);
    expect(toClient(m.serverLine(b('150 end\r\n')))).toEqual(['150 end\r\n', '504 AUTH not supported through ftp-proxy, use plain FTP\r\n']);
  });

  it('-A: a tab after USER does not smuggle a login past the check', () => {
    const m = machine({ anonymousOnly: true });
    m.serverLine(b('220 hi\r\n'));
    const out = m.clientLine(b('USER\tbob\r\n'));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)).toEqual(['500 Only anonymous FTP allowed\r\n']);
    expect(toServer(m.clientLine(b('USER\tftp\r\n')))).toEqual(['USER\tftp\r\n']);
  });
});

describe('log events for --log-format json', () => {
  it('negotiations, refusals and lines carry an event name and their fields', () => {
    const m = loggedIn({ debug: true });
    const [n] = negotiations(m.clientLine(b('PORT 192,168,1,10,156,187\r\n')));
    const done = logActions(m.negotiationDone(n!.id, { ok: true, proxyPort: 55555 }));
    expect(done.find((a) => a.event === 'active')?.fields).toEqual({ command: 'PORT', clientPort: 40123, proxyPort: 55555 });
    expect(done.map((a) => a.event)).toContain('proxy-line');
    m.serverLine(b('200 PORT ok\r\n'));
    m.clientLine(b('EPSV\r\n'));
    const [p] = negotiations(m.serverLine(b('229 (|||50000|)\r\n')));
    const pd = logActions(m.negotiationDone(p!.id, { ok: true, proxyPort: 61000 }));
    expect(pd.find((a) => a.event === 'passive')?.fields).toEqual({ command: 'EPSV', serverPort: 50000, proxyPort: 61000 });
    const bad = logActions(m.clientLine(b('PORT 1,2,3,4,0,21\r\n')));
    expect(bad.find((a) => a.event === 'bad-port')?.fields).toEqual({ command: 'PORT', port: 21 });
    expect(logActions(m.clientLine(b('NOOP\r\n')))[0]?.event).toBe('client-line');
  });
});

describe('plain FTP skips the TLS command rules', () => {
  // FtpControl does not call tlsCommand() while tls_client is none and no leg is TLS: this is why.
  it.each(['AUTH', 'PBSZ', 'PROT', 'CCC', 'REIN', 'USER', 'PASV', 'PORT', 'FEAT', 'XYZ', ''])('tlsCommand passes %j in that state', (verb) => {
    for (const server of ['none', 'forward', 'require'] as const) {
      for (const userSent of [false, true]) {
        const v = tlsCommand(verb, 'TLS', {
          client: 'none',
          server,
          clientTls: false,
          clientSecured: false,
          serverTls: false,
          userSent,
          passthroughRange: false,
        });
        expect(v).toEqual({ act: 'pass' });
      }
    }
  });
});

describe('when the session stops reading (clientPaused, serverPaused)', () => {
  it('a reply on the firewall blocks the server side, but pauses it only once another line queues', () => {
    const m = loggedIn();
    m.clientLine(b('PASV\r\n'));
    const [n] = negotiations(m.serverLine(b('227 Entering Passive Mode (10,1,2,3,195,80)\r\n')));
    expect([m.serverBlocked, m.serverPaused]).toEqual([true, false]);
    expect(m.serverLine(b('200 unsolicited\r\n'))).toEqual([]);
    expect([m.serverBlocked, m.serverPaused]).toEqual([true, true]);
    const done = m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 });
    expect(toClient(done)).toEqual(['227 Entering Passive Mode (198,51,100,21,238,72)\r\n', '200 unsolicited\r\n']);
    expect([m.serverBlocked, m.serverPaused]).toEqual([false, false]);
  });

  it('a PORT on the firewall blocks the client side, but pauses it only once another line queues', () => {
    const m = loggedIn();
    const [n] = negotiations(m.clientLine(b('PORT 10,1,2,3,195,80\r\n')));
    expect([m.clientBlocked, m.clientPaused]).toEqual([true, false]);
    expect(m.clientLine(b('NOOP\r\n'))).toEqual([]);
    expect([m.clientBlocked, m.clientPaused]).toEqual([true, true]);
    expect(toServer(m.negotiationDone(n!.id, { ok: true, proxyPort: 61000 }))).toEqual(['PORT 203,0,113,5,238,72\r\n', 'NOOP\r\n']);
    expect([m.clientBlocked, m.clientPaused]).toEqual([false, false]);
  });

  it('a forced command pauses the client at once (data_mode passive)', () => {
    const m = loggedIn({ policy: policy('data_mode passive') });
    m.clientLine(b('PORT 10,1,2,3,195,80\r\n'));
    expect([m.clientBlocked, m.clientPaused]).toEqual([true, true]);
  });
});
