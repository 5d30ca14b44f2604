// The control state machine under a policy: what reaches each side for denied commands, length limits,
// reply changes, FEAT rewriting, transfers (the idle timer's rest), masquerade addresses, and the data-mode
// translations with their joins. Lines in, actions out, no sockets.
import { describe, expect, it } from 'vitest';
import { type Action, FtpControl, type SessionAddresses } from '../../src/ftp/control.js';
import { parsePolicy, type Policy, PolicyError } from '../../src/policy/parse.js';
import { logIn } from '../helpers/control.js';

const V4: SessionAddresses = {
  client: '192.168.1.10',
  originalServer: '198.51.100.21',
  server: '198.51.100.21',
  proxy: '198.51.100.1',
  clientFamily: 4,
  serverFamily: 4,
};

function policy(text: string): Policy {
  const p = parsePolicy(text, 'unit.policy');
  if (p instanceof PolicyError) throw new Error(p.message);
  return p;
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const text = (a: Action): string => ('data' in a ? a.data.toString('latin1') : '');
const toServer = (as: Action[]): string[] => as.filter((a) => a.type === 'toServer').map(text);
const toClient = (as: Action[]): string[] => as.filter((a) => a.type === 'toClient').map(text);
const types = (as: Action[]): string[] => as.filter((a) => a.type !== 'log').map((a) => a.type);
const joins = (as: Action[]) => as.filter((a): a is Extract<Action, { type: 'join' }> => a.type === 'join');
const negotiations = (as: Action[]) => as.filter((a): a is Extract<Action, { type: 'negotiate' }> => a.type === 'negotiate');
const logText = (as: Action[]): string => as.filter((a) => a.type === 'log').map((a) => (a.type === 'log' ? a.message : '')).join('\n');

function loggedIn(text = '', addr: SessionAddresses = V4): FtpControl {
  return logIn(new FtpControl(3, addr, { anonymousOnly: false, debug: false, firewallName: 'fake', policy: policy(text) }));
}

describe('command policy in the session', () => {
  it('a rejected command is answered locally, never reaches the server, and the session goes on', () => {
    const m = loggedIn('command DELE reject 550 "deleting is not allowed here"');
    const out = m.clientLine(b('DELE important.txt\r\n'));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)).toEqual(['550 deleting is not allowed here\r\n']);
    expect(logText(out)).toMatch(/#3 command DELE refused by policy \(command DELE on policy line 1\)/);
    expect(logText(out)).not.toMatch(/important/);
    expect(toServer(m.clientLine(b('NOOP\r\n')))).toEqual(['NOOP\r\n']);
  });

  it('a local rejection waits for the replies owed before it (pipelining)', () => {
    const m = loggedIn('command SITE reject');
    expect(toServer(m.clientLine(b('PWD\r\n')))).toEqual(['PWD\r\n']);
    expect(toClient(m.clientLine(b('SITE x\r\n')))).toEqual([]);
    expect(toClient(m.serverLine(b('257 "/"\r\n')))).toEqual(['257 "/"\r\n', '502 Command not allowed by policy\r\n']);
  });

  it('drop: a 421, then the session ends', () => {
    const m = loggedIn('command SITE drop');
    const out = m.clientLine(b('SITE EXEC /bin/sh\r\n'));
    expect(types(out)).toEqual(['toClient', 'close']);
    expect(toClient(out)[0]).toMatch(/^421 SITE not allowed by policy/);
    expect(m.clientLine(b('NOOP\r\n'))).toEqual([]);
  });

  it('the argument regex decides (the password is never logged)', () => {
    const m = loggedIn('command RETR match /^[\\w.-]+$/ accept\ncommand RETR reject 550 "no"');
    expect(toServer(m.clientLine(b('RETR a.txt\r\n')))).toEqual(['RETR a.txt\r\n']);
    m.serverLine(b('550 no such file\r\n'));
    expect(toClient(m.clientLine(b('RETR ../x\r\n')))).toEqual(['550 no\r\n']);
  });

  it.each([
    ['max_line_length 10', 'NOOP 123456\r\n', /^500 Command line too long \(more than 10 bytes\)/],
    ['max_username_length 4', 'USER abcde\r\n', /^501 User name too long \(more than 4 characters\)/],
    ['max_password_length 3', 'PASS abcd\r\n', /^501 Password too long \(more than 3 characters\)/],
  ])('%s: %j gets a clear reply and is not sent', (rule, line, reply) => {
    const m = loggedIn(rule);
    const out = m.clientLine(b(line));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)[0]).toMatch(reply);
  });

  it.each([
    ['max_line_length 10', 'NOOP 12345\r\n'], // 10 bytes without CRLF
    ['max_username_length 4', 'USER abcd\r\n'],
    ['max_password_length 3', 'PASS abc\n'],
  ])('%s: %j (at the limit) goes on', (rule, line) => {
    expect(toServer(loggedIn(rule).clientLine(b(line)))).toEqual([line]);
  });
});

describe('reply policy in the session', () => {
  it('change replaces a whole multi-line reply with one line', () => {
    const m = loggedIn('reply HELP214 change 214 "Ask your administrator."');
    m.clientLine(b('HELP\r\n'));
    expect(toClient(m.serverLine(b('214-The following commands are recognized:\r\n')))).toEqual([]);
    expect(toClient(m.serverLine(b(' USER PASS\r\n')))).toEqual([]);
    expect(toClient(m.serverLine(b('214 Direct comments to root\r\n')))).toEqual(['214 Ask your administrator.\r\n']);
    m.clientLine(b('NOOP\r\n'));
    expect(toClient(m.serverLine(b('200 ok\r\n')))).toEqual(['200 ok\r\n']);
  });

  it('abort: a 421 and the end of the session', () => {
    const m = loggedIn('reply SYST abort');
    m.clientLine(b('SYST\r\n'));
    const out = m.serverLine(b('215 UNIX Type: L8\r\n'));
    expect(types(out)).toEqual(['toClient', 'close']);
    expect(toClient(out)[0]).toMatch(/^421 Reply not allowed by policy/);
  });

  it('a preliminary reply is not changed into a final one', () => {
    const m = loggedIn('reply RETR1 change 550 "no"');
    m.clientLine(b('RETR x\r\n'));
    const out = m.serverLine(b('150 Opening\r\n'));
    expect(toClient(out)).toEqual(['150 Opening\r\n']);
    expect(logText(out)).toMatch(/a preliminary reply must stay preliminary/);
  });

  it('the greeting is matched by the wildcard only', () => {
    const m = new FtpControl(3, V4, { anonymousOnly: false, debug: false, firewallName: 'fake', policy: policy('reply *220 change 220 "FTP"') });
    expect(toClient(m.serverLine(b('220 ProFTPD 1.3.8 Server ready\r\n')))).toEqual(['220 FTP\r\n']);
  });

  it('a changed 227 is not rewritten and opens nothing', () => {
    const m = loggedIn('reply PASV227 change 425 "no passive mode here"');
    m.clientLine(b('PASV\r\n'));
    const out = m.serverLine(b('227 Entering Passive Mode (198,51,100,21,195,80)\r\n'));
    expect(toClient(out)).toEqual(['425 no passive mode here\r\n']);
    expect(negotiations(out)).toEqual([]);
  });
});

describe('FEAT', () => {
  const FEAT = ['211-Features:\r\n', ' AUTH TLS\r\n', ' MDTM\r\n', ' MLST type*;size*;\r\n', ' PBSZ\r\n', ' PROT\r\n', ' SIZE\r\n', '211 End\r\n'];
  const run = (m: FtpControl, lines: string[]): string[] => {
    m.clientLine(b('FEAT\r\n'));
    return lines.flatMap((l) => toClient(m.serverLine(b(l))));
  };

  it('without a policy file: AUTH TLS, PBSZ and PROT are dropped (the proxy refuses AUTH), the rest passes', () => {
    const m = new FtpControl(3, V4, { anonymousOnly: false, debug: false, firewallName: 'fake' });
    m.serverLine(b('220 hi\r\n'));
    expect(run(m, FEAT)).toEqual(['211-Features:\r\n', ' MDTM\r\n', ' MLST type*;size*;\r\n', ' SIZE\r\n', '211 End\r\n']);
  });

  it('drop and insert', () => {
    expect(run(loggedIn('feat MLST drop\nfeat UTF8 insert\nfeat MDTM insert'), FEAT)).toEqual(['211-Features:\r\n', ' MDTM\r\n', ' SIZE\r\n', ' UTF8\r\n', '211 End\r\n']);
  });

  it('a one-line FEAT reply becomes a list when something is inserted', () => {
    expect(run(loggedIn('feat UTF8 insert'), ['211 No features\r\n']).join('')).toBe('211-No features\r\n UTF8\r\n211 End\r\n');
  });

  it('a FEAT refused by the server passes unchanged', () => {
    expect(run(loggedIn('feat UTF8 insert'), ['500 FEAT not understood\r\n'])).toEqual(['500 FEAT not understood\r\n']);
  });
});

describe('transfers: the idle timer rests between a 1xx and the final reply', () => {
  it('transferring is true from the 150 to the 226 only', () => {
    const m = loggedIn();
    expect(m.transferring).toBe(false);
    m.clientLine(b('RETR big\r\n'));
    expect(m.transferring).toBe(false);
    m.serverLine(b('150 Opening BINARY mode data connection\r\n'));
    expect(m.transferring).toBe(true);
    m.serverLine(b('226 Transfer complete\r\n'));
    expect(m.transferring).toBe(false);
  });
});

describe('masquerade addresses', () => {
  const addr: SessionAddresses = { ...V4, advertiseToClient: '203.0.113.80', advertiseToServer: '192.0.2.7' };
  it('227 replies name masquerade_client; the pinhole still uses the real addresses', () => {
    const m = loggedIn('', addr);
    m.clientLine(b('PASV\r\n'));
    const n = negotiations(m.serverLine(b('227 Entering Passive Mode (10,9,9,9,195,80)\r\n')));
    expect(n[0]!.negotiation).toEqual({ kind: 'passive', command: 'PASV', serverPort: 50000 });
    expect(toClient(m.negotiationDone(n[0]!.id, { ok: true, proxyPort: 50001 }))).toEqual(['227 Entering Passive Mode (203,0,113,80,195,81)\r\n']);
  });

  it('PORT and EPRT to the server name masquerade_server', () => {
    const m = loggedIn('', addr);
    const n = negotiations(m.clientLine(b('PORT 192,168,1,10,195,80\r\n')));
    expect(toServer(m.negotiationDone(n[0]!.id, { ok: true, proxyPort: 50001 }))).toEqual(['PORT 192,0,2,7,195,81\r\n']);
    m.serverLine(b('200 ok\r\n'));
    const n2 = negotiations(m.clientLine(b('EPRT |1|192.168.1.10|50000|\r\n')));
    expect(toServer(m.negotiationDone(n2[0]!.id, { ok: true, proxyPort: 50002 }))).toEqual(['EPRT |1|192.0.2.7|50002|\r\n']);
  });
});

describe('data_mode passive: the server is always asked for passive mode', () => {
  it('client PORT -> server PASV -> join-connect -> 200 to the client; the RETR behind it waits', () => {
    const m = loggedIn('data_mode passive');
    const out = m.clientLine(b('PORT 192,168,1,10,195,80\r\n'));
    expect(toServer(out)).toEqual(['PASV\r\n']);
    expect(negotiations(out)).toEqual([]);
    expect(toServer(m.clientLine(b('RETR f\r\n')))).toEqual([]); // held until the PORT is answered
    const j = joins(m.serverLine(b('227 Entering Passive Mode (203,0,113,99,195,90)\r\n')));
    expect(j.map((x) => x.join)).toEqual([{ kind: 'join-connect', command: 'PORT', clientPort: 50000, serverPort: 50010 }]);
    const done = m.negotiationDone(j[0]!.id, { ok: true, proxyPort: 0 });
    expect(toClient(done)).toEqual(['200 PORT command successful\r\n']);
    expect(toServer(done)).toEqual(['RETR f\r\n']);
  });

  it('client EPRT -> server EPSV, refused -> PASV; the client never sees the refusal', () => {
    const m = loggedIn('data_mode passive');
    expect(toServer(m.clientLine(b('EPRT |1|192.168.1.10|50000|\r\n')))).toEqual(['EPSV\r\n']);
    const fb = m.serverLine(b('500 EPSV not understood\r\n'));
    expect(toClient(fb)).toEqual([]);
    expect(toServer(fb)).toEqual(['PASV\r\n']);
    const j = joins(m.serverLine(b('227 Entering Passive Mode (198,51,100,21,195,90)\r\n')));
    expect(j[0]!.join).toEqual({ kind: 'join-connect', command: 'EPRT', clientPort: 50000, serverPort: 50010 });
    expect(toClient(m.negotiationDone(j[0]!.id, { ok: true, proxyPort: 0 }))).toEqual(['200 EPRT command successful\r\n']);
  });

  it('a failed join answers the PORT with 425', () => {
    const m = loggedIn('data_mode passive');
    m.clientLine(b('PORT 192,168,1,10,195,80\r\n'));
    const j = joins(m.serverLine(b('229 Entering Extended Passive Mode (|||50010|)\r\n')));
    expect(j).toEqual([]); // a PASV is answered by 227 only
    const m2 = loggedIn('data_mode passive');
    m2.clientLine(b('PORT 192,168,1,10,195,80\r\n'));
    const j2 = joins(m2.serverLine(b('227 Entering Passive Mode (198,51,100,21,195,90)\r\n')));
    expect(toClient(m2.negotiationDone(j2[0]!.id, { ok: false, error: 'connect ECONNREFUSED' }))[0]).toMatch(/^425 Can't open data connection: connect ECONNREFUSED/);
  });

  it('client EPSV, server without EPSV: PASV, a kernel pinhole, and the client gets its 229', () => {
    const m = loggedIn('data_mode passive');
    expect(toServer(m.clientLine(b('EPSV\r\n')))).toEqual(['EPSV\r\n']);
    expect(toServer(m.serverLine(b('502 EPSV not implemented\r\n')))).toEqual(['PASV\r\n']);
    const n = negotiations(m.serverLine(b('227 Entering Passive Mode (198,51,100,21,195,90)\r\n')));
    expect(n[0]!.negotiation).toEqual({ kind: 'passive', command: 'EPSV', serverPort: 50010 });
    expect(toClient(m.negotiationDone(n[0]!.id, { ok: true, proxyPort: 50123 }))).toEqual(['229 Entering Extended Passive Mode (|||50123|)\r\n']);
  });

  it('a client PASV stays a kernel pinhole', () => {
    const m = loggedIn('data_mode passive');
    expect(toServer(m.clientLine(b('PASV\r\n')))).toEqual(['PASV\r\n']);
    expect(negotiations(m.serverLine(b('227 Entering Passive Mode (198,51,100,21,195,90)\r\n'))).length).toBe(1);
  });
});

describe('data_mode active: the server is always given PORT/EPRT', () => {
  it('client PASV -> join-listen -> PORT to the server -> 227 naming OS to the client', () => {
    const m = loggedIn('data_mode active');
    const out = m.clientLine(b('PASV\r\n'));
    expect(toServer(out)).toEqual([]);
    const j = joins(out);
    expect(j[0]!.join).toEqual({ kind: 'join-listen', command: 'PASV' });
    const sent = m.negotiationDone(j[0]!.id, { ok: true, proxyPort: 50001, clientPort: 50002 });
    expect(toServer(sent)).toEqual(['PORT 198,51,100,1,195,81\r\n']);
    expect(toServer(m.clientLine(b('LIST\r\n')))).toEqual([]); // waits for the server's answer
    const rep = m.serverLine(b('200 PORT command successful\r\n'));
    expect(toClient(rep)).toEqual(['227 Entering Passive Mode (198,51,100,21,195,82)\r\n']);
    expect(toServer(rep)).toEqual(['LIST\r\n']);
  });

  it('client EPSV -> 229', () => {
    const m = loggedIn('data_mode active');
    const j = joins(m.clientLine(b('EPSV\r\n')));
    m.negotiationDone(j[0]!.id, { ok: true, proxyPort: 50001, clientPort: 50002 });
    expect(toClient(m.serverLine(b('200 ok\r\n')))).toEqual(['229 Entering Extended Passive Mode (|||50002|)\r\n']);
  });

  it('the server refuses PORT: its reply reaches the client and the join is cancelled', () => {
    const m = loggedIn('data_mode active');
    const j = joins(m.clientLine(b('PASV\r\n')));
    m.negotiationDone(j[0]!.id, { ok: true, proxyPort: 50001, clientPort: 50002 });
    const out = m.serverLine(b('500 Illegal PORT command\r\n'));
    expect(types(out)).toEqual(['joinCancel', 'toClient']);
    expect(toClient(out)).toEqual(['500 Illegal PORT command\r\n']);
  });

  it('EPSV ALL is answered by the proxy (the server will get PORT)', () => {
    const m = loggedIn('data_mode active');
    const out = m.clientLine(b('EPSV ALL\r\n'));
    expect(toServer(out)).toEqual([]);
    expect(toClient(out)).toEqual(['200 EPSV ALL command successful\r\n']);
  });

  it('a client PORT stays a kernel pinhole', () => {
    const m = loggedIn('data_mode active');
    expect(negotiations(m.clientLine(b('PORT 192,168,1,10,195,80\r\n'))).length).toBe(1);
  });
});
