// FtpControl through whole FTPS conversations (issue 12): the exact actions it emits for each line, TLS
// result and negotiation result, per tls_client x tls_server. The logs are left out of the sequences
// (their events are checked where they matter); everything else is in order.
import { describe, expect, it } from 'vitest';
import { type Action, FtpControl, type TlsConfig } from '../../src/ftp/control.js';
import { LOG_ERR } from '../../src/levels.js';
import { defaultPolicy, type Policy } from '../../src/policy/parse.js';
import type { TlsClientMode, TlsServerMode } from '../../src/policy/tls.js';
import { V4 } from '../helpers/control.js';
import { policy } from '../helpers/policy-text.js';

/** A session's state machine with the tls_* modes in both its policy (the gate) and its TLS config. */
function machine(client: TlsClientMode, server: TlsServerMode, o: Partial<TlsConfig> & { policy?: Policy } = {}): FtpControl {
  const policy = o.policy ?? defaultPolicy();
  policy.tls = { ...policy.tls, client, server };
  const tls: TlsConfig = { client, server, clientImplicit: false, serverImplicit: false, ...o };
  delete (tls as { policy?: Policy }).policy;
  return new FtpControl(7, V4, { anonymousOnly: false, debug: false, firewallName: 'nftables', policy, tls });
}

/** Actions as short, comparable values: "C: line" to the client, "S: line" to the server, objects else. */
type Short = string | Record<string, unknown>;
function short(out: Action[]): Short[] {
  const r: Short[] = [];
  for (const a of out) {
    switch (a.type) {
      case 'toClient':
        r.push(`C: ${a.data.toString('latin1')}`);
        break;
      case 'toServer':
        r.push(`S: ${a.data.toString('latin1')}`);
        break;
      case 'log':
        break;
      case 'tls':
        r.push({ tls: a.leg, op: a.op });
        break;
      case 'negotiate':
        r.push({ negotiate: a.negotiation });
        break;
      case 'join':
        r.push({ join: a.join });
        break;
      case 'close':
        r.push('close');
        break;
      default:
        r.push({ type: a.type });
    }
  }
  return r;
}

/** Drives one machine and remembers the ids of its last 'tls' and negotiation actions. */
class Drive {
  tlsId = -1;
  negId = -1;
  last: Action[] = [];
  constructor(readonly m: FtpControl) {}
  take(out: Action[]): Short[] {
    this.last = out;
    for (const a of out) {
      if (a.type === 'tls') this.tlsId = a.id;
      if (a.type === 'negotiate' || a.type === 'join') this.negId = a.id;
    }
    return short(out);
  }
  client(line: string): Short[] {
    return this.take(this.m.clientLine(Buffer.from(`${line}\r\n`, 'latin1')));
  }
  server(line: string): Short[] {
    return this.take(this.m.serverLine(Buffer.from(`${line}\r\n`, 'latin1')));
  }
  tlsOk(): Short[] {
    return this.take(this.m.tlsDone(this.tlsId, { ok: true }));
  }
  tlsFail(error: string): Short[] {
    return this.take(this.m.tlsDone(this.tlsId, { ok: false, error }));
  }
  negotiated(proxyPort: number): Short[] {
    return this.take(this.m.negotiationDone(this.negId, { ok: true, proxyPort }));
  }
  refused(error: string): Short[] {
    return this.take(this.m.negotiationDone(this.negId, { ok: false, error }));
  }
  /** The greeting, relayed. */
  greet(): this {
    expect(this.server('220 ready')).toEqual(['C: 220 ready\r\n']);
    return this;
  }
  /** USER/PASS/230 relayed (the client leg as it is now). */
  login(): this {
    expect(this.client('USER lab')).toEqual(['S: USER lab\r\n']);
    expect(this.server('331 password')).toEqual(['C: 331 password\r\n']);
    expect(this.client('PASS lab')).toEqual(['S: PASS lab\r\n']);
    expect(this.server('230 in')).toEqual(['C: 230 in\r\n']);
    return this;
  }
}

const PROXY_234 = 'C: 234 AUTH TLS successful, start the TLS handshake\r\n';
const CLIENT_START = { tls: 'client', op: 'start' };
const SERVER_START = { tls: 'server', op: 'start' };
/** The server's passive port 50000 (195*256+80), as the scripted servers say it. */
const PASV_227 = '227 Entering Passive Mode (198,51,100,21,195,80)';
/** What the client is told for proxy port 55000 (214*256+216), at the address it dialled. */
const CLIENT_227 = 'C: 227 Entering Passive Mode (198,51,100,21,214,216)\r\n';

/** accept + none, after AUTH TLS and its handshake. */
function acceptTls(server: TlsServerMode = 'none'): Drive {
  const d = new Drive(machine('accept', server)).greet();
  d.client('AUTH TLS');
  if (server !== 'none') {
    d.server('234 go ahead');
    d.tlsOk();
  }
  d.tlsOk();
  expect(d.m.legs).toEqual({ client: true, server: server !== 'none' });
  return d;
}

describe('(a) tls_client accept, tls_server none: TLS with the client only', () => {
  it('AUTH TLS: the proxy says 234, then starts TLS; lines read meanwhile wait for tlsDone', () => {
    const d = new Drive(machine('accept', 'none')).greet();
    expect(d.client('AUTH TLS')).toEqual([PROXY_234, CLIENT_START]);
    expect(d.m.clientBlocked).toBe(true);
    expect(d.m.legs).toEqual({ client: false, server: false });
    // read after the handshake began (from the TLS stream): held, not answered yet
    expect(d.client('PBSZ 0')).toEqual([]);
    expect(d.client('PROT P')).toEqual([]);
    expect(d.tlsOk()).toEqual(['C: 200 PBSZ=0\r\n', 'C: 200 Protection level set to P\r\n']);
    expect(d.m.legs).toEqual({ client: true, server: false });
    expect(d.m.clientBlocked).toBe(false);
  });

  it('AUTH SSL (what curl tries first) is taken the same way', () => {
    const d = new Drive(machine('accept', 'none')).greet();
    expect(d.client('AUTH SSL')).toEqual([PROXY_234, CLIENT_START]);
  });

  it('PROT P then PASV: the server\'s 227 becomes a relay-passive join with TLS on the client leg only', () => {
    const d = acceptTls();
    expect(d.client('PBSZ 0')).toEqual(['C: 200 PBSZ=0\r\n']);
    expect(d.client('PROT P')).toEqual(['C: 200 Protection level set to P\r\n']);
    d.login();
    expect(d.client('PASV')).toEqual(['S: PASV\r\n']);
    expect(d.server(PASV_227)).toEqual([{ join: { kind: 'relay-passive', command: 'PASV', serverPort: 50000, tls: { client: true, server: false } } }]);
    expect(d.negotiated(55000)).toEqual([CLIENT_227]);
    // EPSV likewise, answered in its own form
    expect(d.client('EPSV')).toEqual(['S: EPSV\r\n']);
    expect(d.server('229 Entering Extended Passive Mode (|||50001|)')).toEqual([{ join: { kind: 'relay-passive', command: 'EPSV', serverPort: 50001, tls: { client: true, server: false } } }]);
    expect(d.negotiated(55001)).toEqual(['C: 229 Entering Extended Passive Mode (|||55001|)\r\n']);
  });

  it('PROT C then PASV: a plain negotiation (the kernel pinhole), as without TLS', () => {
    const d = acceptTls();
    d.client('PBSZ 0');
    expect(d.client('PROT C')).toEqual(['C: 200 Protection level set to C\r\n']);
    d.login();
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ negotiate: { kind: 'passive', command: 'PASV', serverPort: 50000 } }]);
    expect(d.negotiated(55000)).toEqual([CLIENT_227]);
  });

  it('no PROT at all: clear data (PROT C is the default), a plain negotiation', () => {
    const d = acceptTls().login();
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ negotiate: { kind: 'passive', command: 'PASV', serverPort: 50000 } }]);
  });

  it('PROT P then PORT: a relay-active join, and the server is told the proxy\'s port', () => {
    const d = acceptTls();
    d.client('PBSZ 0');
    d.client('PROT P');
    d.login();
    expect(d.client('PORT 192,168,1,10,156,187')).toEqual([{ join: { kind: 'relay-active', command: 'PORT', clientPort: 40123, tls: { client: true, server: false } } }]);
    expect(d.negotiated(55555)).toEqual(['S: PORT 203,0,113,5,217,3\r\n']);
  });

  it('a PROT P relay-passive join that fails gives the client a 425', () => {
    const d = acceptTls();
    d.client('PBSZ 0');
    d.client('PROT P');
    d.client('PASV');
    d.server(PASV_227);
    expect(d.refused('EADDRINUSE')).toEqual(["C: 425 Can't open data connection: the firewall refused the PASV pinhole\r\n"]);
  });
});

describe('(b) tls_client accept, tls_server forward: the server first, then the client', () => {
  it('AUTH: AUTH TLS to the server, its 234 swallowed, server TLS, then 234 and client TLS', () => {
    const d = new Drive(machine('accept', 'forward')).greet();
    expect(d.client('AUTH TLS')).toEqual(['S: AUTH TLS\r\n']);
    expect(d.m.clientBlocked).toBe(true);
    expect(d.server('234 Proceed with negotiation.')).toEqual([SERVER_START]);
    expect(d.m.serverBlocked).toBe(true);
    expect(d.tlsOk()).toEqual([PROXY_234, CLIENT_START]);
    expect(d.m.legs).toEqual({ client: false, server: true });
    expect(d.tlsOk()).toEqual([]);
    expect(d.m.legs).toEqual({ client: true, server: true });
    expect(d.m.clientBlocked).toBe(false);
  });

  it('the client says AUTH SSL: the server is still sent AUTH TLS', () => {
    const d = new Drive(machine('accept', 'forward')).greet();
    expect(d.client('AUTH SSL')).toEqual(['S: AUTH TLS\r\n']);
  });

  it('a multi-line 234 is swallowed whole', () => {
    const d = new Drive(machine('accept', 'forward')).greet();
    d.client('AUTH TLS');
    expect(d.server('234-here it comes')).toEqual([]);
    expect(d.server('234 go')).toEqual([SERVER_START]);
  });

  it.each(['500 AUTH not understood', '534 Policy requires SSL', '431 no TLS here'])('the server refuses AUTH (%s): the client gets it as it is, both legs stay plain', (refusal) => {
    const d = new Drive(machine('accept', 'forward')).greet();
    d.client('AUTH TLS');
    expect(d.server(refusal)).toEqual([`C: ${refusal}\r\n`]);
    expect(d.m.legs).toEqual({ client: false, server: false });
    expect(d.m.clientBlocked).toBe(false);
    // and the session goes on in plain text
    d.login();
  });

  it('PBSZ and PROT go to the server; both legs take P only on its 2xx', () => {
    const d = acceptTls('forward');
    expect(d.client('PBSZ 0')).toEqual(['S: PBSZ 0\r\n']);
    expect(d.server('200 PBSZ=0')).toEqual(['C: 200 PBSZ=0\r\n']);
    expect(d.client('PROT P')).toEqual(['S: PROT P\r\n']);
    expect(d.server('200 PROT now Private.')).toEqual(['C: 200 PROT now Private.\r\n']);
    d.login();
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ join: { kind: 'relay-passive', command: 'PASV', serverPort: 50000, tls: { client: true, server: true } } }]);
    expect(d.negotiated(55000)).toEqual([CLIENT_227]);
  });

  it('PROT P refused by the server: neither leg takes P (a plain negotiation follows)', () => {
    const d = acceptTls('forward');
    d.client('PBSZ 0');
    d.server('200 PBSZ=0');
    d.client('PROT P');
    expect(d.server('536 PROT P not supported')).toEqual(['C: 536 PROT P not supported\r\n']);
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ negotiate: { kind: 'passive', command: 'PASV', serverPort: 50000 } }]);
  });

  it('PROT P then PROT C (both 2xx): back to the kernel pinhole', () => {
    const d = acceptTls('forward');
    d.client('PROT P');
    d.server('200 ok');
    d.client('PROT C');
    d.server('200 ok');
    d.client('EPSV');
    expect(d.server('229 Entering Extended Passive Mode (|||50001|)')).toEqual([{ negotiate: { kind: 'passive', command: 'EPSV', serverPort: 50001 } }]);
  });

  it('PORT and EPRT under PROT P: relay-active joins with TLS on both legs', () => {
    const d = acceptTls('forward');
    d.client('PBSZ 0');
    d.server('200 PBSZ=0');
    d.client('PROT P');
    d.server('200 ok');
    d.login();
    expect(d.client('PORT 192,168,1,10,156,187')).toEqual([{ join: { kind: 'relay-active', command: 'PORT', clientPort: 40123, tls: { client: true, server: true } } }]);
    expect(d.negotiated(55555)).toEqual(['S: PORT 203,0,113,5,217,3\r\n']);
    expect(d.server('200 PORT ok')).toEqual(['C: 200 PORT ok\r\n']);
    expect(d.client('EPRT |1|192.168.1.10|40124|')).toEqual([{ join: { kind: 'relay-active', command: 'EPRT', clientPort: 40124, tls: { client: true, server: true } } }]);
    expect(d.negotiated(55556)).toEqual(['S: EPRT |1|203.0.113.5|55556|\r\n']);
  });
});

describe('(c) tls_server require with a plain client: the proxy protects the server leg itself', () => {
  /** The proxy's set-up after the greeting, up to PROT P's reply (`prot`). */
  function setUp(d: Drive, prot = '200 PROT now Private.'): Short[] {
    expect(d.server('220 ready')).toEqual(['C: 220 ready\r\n', 'S: AUTH TLS\r\n']);
    expect(d.m.clientBlocked).toBe(true);
    expect(d.server('234 Proceed with negotiation.')).toEqual([SERVER_START]);
    expect(d.tlsOk()).toEqual(['S: PBSZ 0\r\n']);
    expect(d.m.legs).toEqual({ client: false, server: true });
    expect(d.server('200 PBSZ=0')).toEqual(['S: PROT P\r\n']);
    expect(d.m.clientBlocked).toBe(true);
    return d.server(prot);
  }

  it('AUTH TLS after the greeting, then PBSZ 0 and PROT P, their replies swallowed; the client waits for it', () => {
    const d = new Drive(machine('none', 'require'));
    expect(setUp(d)).toEqual([]);
    expect(d.m.clientBlocked).toBe(false);
    d.login();
    // data: plain to the client, TLS to the server
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ join: { kind: 'relay-passive', command: 'PASV', serverPort: 50000, tls: { client: false, server: true } } }]);
    expect(d.negotiated(55000)).toEqual([CLIENT_227]);
  });

  // Fixed in 2a69c68: a line read while the proxy's own AUTH/PBSZ/PROT were in flight was stranded in
  // the queue when PROT's reply ended, and the client's next line overtook it.
  it('a USER read while the set-up runs goes to the server when PROT\'s reply ends', () => {
    const d = new Drive(machine('none', 'require'));
    d.server('220 ready');
    expect(d.client('USER lab')).toEqual([]);
    d.server('234 go');
    d.tlsOk();
    d.server('200 PBSZ=0');
    expect(d.server('200 PROT now Private.')).toEqual(['S: USER lab\r\n']);
  });

  it('(same bug) the queued USER is not overtaken by the next line', () => {
    const d = new Drive(machine('none', 'require'));
    d.server('220 ready');
    d.client('USER lab');
    d.server('234 go');
    d.tlsOk();
    d.server('200 PBSZ=0');
    const sent = [...d.server('200 PROT now Private.'), ...d.client('PASS lab')];
    expect(sent).toEqual(['S: USER lab\r\n', 'S: PASS lab\r\n']);
  });

  it.each(['500 AUTH not understood', '530 Please login with USER and PASS', '421 go away'])('a refusal of AUTH (%s) ends the session with a 421', (refusal) => {
    const d = new Drive(machine('none', 'require'));
    d.server('220 ready');
    d.client('USER lab');
    const out = d.server(refusal);
    expect(short(out.length ? d.last : [])).toEqual(['C: 421 The server does not offer TLS, which this proxy requires, closing control connection.\r\n', 'close']);
    expect(d.last).toContainEqual(expect.objectContaining({ type: 'log', level: LOG_ERR, event: 'tls-refused' }));
    // nothing more happens: the held USER never goes out
    expect(d.server('220 hello again')).toEqual([]);
    expect(d.client('PASS lab')).toEqual([]);
  });

  it('PROT P refused: the data to the server stays clear (a warning), and the session goes on', () => {
    const d = new Drive(machine('none', 'require'));
    expect(setUp(d, '536 PROT P not supported')).toEqual([]);
    expect(d.last).toContainEqual(expect.objectContaining({ type: 'log', event: 'tls-prot-refused' }));
    expect(d.m.clientBlocked).toBe(false);
    d.login();
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ negotiate: { kind: 'passive', command: 'PASV', serverPort: 50000 } }]);
  });

  it('a multi-line greeting: AUTH TLS after its last line', () => {
    const d = new Drive(machine('none', 'require'));
    expect(d.server('220-Welcome')).toEqual(['C: 220-Welcome\r\n']);
    expect(d.server('220 ready')).toEqual(['C: 220 ready\r\n', 'S: AUTH TLS\r\n']);
  });

  it('tls_client accept with tls_server require: a client that later says AUTH gets TLS locally (the server leg is already TLS)', () => {
    const d = new Drive(machine('accept', 'require'));
    d.server('220 ready');
    d.server('234 go');
    d.tlsOk();
    d.server('200 PBSZ=0');
    d.server('200 PROT now Private.');
    expect(d.client('AUTH TLS')).toEqual([PROXY_234, CLIENT_START]);
    d.tlsOk();
    expect(d.m.legs).toEqual({ client: true, server: true });
    // the server leg is TLS: PBSZ/PROT go on to it
    expect(d.client('PBSZ 0')).toEqual(['S: PBSZ 0\r\n']);
  });

  // Fixed in 2a69c68: a login pipelined ahead of the greeting went to the server in the clear, before
  // the proxy's AUTH TLS.
  it('USER and PASS sent before the greeting wait for the server leg\'s TLS too', () => {
    const d = new Drive(machine('none', 'require'));
    expect(d.client('USER lab')).toEqual([]);
    expect(d.client('PASS secret')).toEqual([]);
    expect(d.server('220 ready')).toEqual(['C: 220 ready\r\n', 'S: AUTH TLS\r\n']);
  });
});

describe('(d) CCC: the proxy says 200, then the client leg returns to plain text', () => {
  it('accept + none', () => {
    const d = acceptTls().login();
    expect(d.client('CCC')).toEqual(['C: 200 CCC command successful, control channel cleared\r\n', { tls: 'client', op: 'stop' }]);
    expect(d.client('PASV')).toEqual([]); // after the 200: waits for the TLS shutdown
    expect(d.tlsOk()).toEqual(['S: PASV\r\n']);
    expect(d.m.legs).toEqual({ client: false, server: false });
    // a second CCC: the leg is plain
    d.server(PASV_227);
    d.negotiated(55000);
    expect(d.client('CCC')).toEqual(['C: 533 Control channel is not protected\r\n']);
  });

  it('accept + forward: the server leg stays TLS', () => {
    const d = acceptTls('forward').login();
    expect(d.client('CCC')).toEqual(['C: 200 CCC command successful, control channel cleared\r\n', { tls: 'client', op: 'stop' }]);
    d.tlsOk();
    expect(d.m.legs).toEqual({ client: false, server: true });
  });

  it('CCC waits for the replies owed before it', () => {
    const d = acceptTls().login();
    expect(d.client('NOOP')).toEqual(['S: NOOP\r\n']);
    expect(d.client('CCC')).toEqual([]);
    expect(d.server('200 NOOP ok')).toEqual(['C: 200 NOOP ok\r\n', 'C: 200 CCC command successful, control channel cleared\r\n', { tls: 'client', op: 'stop' }]);
  });

  it('PROT P survives CCC (RFC 4217: CCC clears the control channel only)', () => {
    const d = acceptTls();
    d.client('PBSZ 0');
    d.client('PROT P');
    d.client('CCC');
    d.tlsOk();
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ join: { kind: 'relay-passive', command: 'PASV', serverPort: 50000, tls: { client: true, server: false } } }]);
  });

  it('after CCC, PROT C is still answered (the proxy remembers the client was secured)', () => {
    const d = acceptTls();
    d.client('CCC');
    d.tlsOk();
    expect(d.client('PROT C')).toEqual(['C: 200 Protection level set to C\r\n']);
    expect(d.client('AUTH TLS')).toEqual(['C: 503 AUTH after CCC is not supported\r\n']);
  });
});

describe('(e) STARTTLS command injection: nothing read in the clear runs as if it came under TLS', () => {
  it('accept + none: AUTH TLS and USER read before the 234 went out -> 421 and close, no USER to the server', () => {
    const d = new Drive(machine('accept', 'none')).greet();
    // an outstanding reply holds the 234 back: the client's next line is read before it goes out
    expect(d.client('NOOP')).toEqual(['S: NOOP\r\n']);
    expect(d.client('AUTH TLS')).toEqual([]);
    expect(d.client('USER x')).toEqual([]);
    expect(d.server('200 NOOP ok')).toEqual(['C: 200 NOOP ok\r\n', 'C: 421 Commands after AUTH before the TLS handshake, closing control connection.\r\n', 'close']);
    expect(d.last).toContainEqual(expect.objectContaining({ type: 'log', event: 'tls-injection' }));
    expect(d.tlsOk()).toEqual([]);
    expect(d.client('PASS x')).toEqual([]);
  });

  it('accept + forward: USER read while the server leg\'s TLS starts -> 421 and close, no USER to the server', () => {
    const d = new Drive(machine('accept', 'forward')).greet();
    expect(d.client('AUTH TLS')).toEqual(['S: AUTH TLS\r\n']);
    expect(d.client('USER x')).toEqual([]);
    expect(d.server('234 go')).toEqual([SERVER_START]);
    const out = d.tlsOk();
    expect(out).toEqual(['C: 421 Commands after AUTH before the TLS handshake, closing control connection.\r\n', 'close']);
    expect(out.some((s) => typeof s === 'string' && s.startsWith('S:'))).toBe(false);
  });
});

describe('(f) refusals under TLS', () => {
  it('REIN under TLS: 502, nothing to the server', () => {
    const d = acceptTls().login();
    expect(d.client('REIN')).toEqual(['C: 502 REIN not allowed under TLS through ftp-proxy\r\n']);
  });

  it('REIN with the server leg alone TLS (tls_server require): 502', () => {
    const d = new Drive(machine('none', 'require'));
    d.server('220 ready');
    d.server('234 go');
    d.tlsOk();
    d.server('200 PBSZ=0');
    d.server('200 PROT now Private.');
    expect(d.client('REIN')).toEqual(['C: 502 REIN not allowed under TLS through ftp-proxy\r\n']);
  });

  it('REIN without TLS (accept, never used): goes to the server', () => {
    const d = new Drive(machine('accept', 'none')).greet().login();
    expect(d.client('REIN')).toEqual(['S: REIN\r\n']);
  });

  it('AUTH after USER: 503; after the whole login too', () => {
    const d = new Drive(machine('accept', 'forward')).greet();
    d.client('USER lab');
    expect(d.client('AUTH TLS')).toEqual([]); // behind the 331 owed
    expect(d.server('331 password')).toEqual(['C: 331 password\r\n', 'C: 503 AUTH must come before USER\r\n']);
    d.client('PASS lab');
    d.server('230 in');
    expect(d.client('AUTH TLS')).toEqual(['C: 503 AUTH must come before USER\r\n']);
    expect(d.m.legs).toEqual({ client: false, server: false });
  });

  it('a second AUTH: 503', () => {
    const d = acceptTls('forward');
    expect(d.client('AUTH TLS')).toEqual(['C: 503 TLS is already active on this connection\r\n']);
  });

  it('tls_client require: USER before AUTH gets 530 and does not count as sent (AUTH still works)', () => {
    const d = new Drive(machine('require', 'none')).greet();
    expect(d.client('USER lab')).toEqual(['C: 530 This proxy requires FTPS: send AUTH TLS first\r\n']);
    expect(d.client('PASV')).toEqual(['C: 530 This proxy requires FTPS: send AUTH TLS first\r\n']);
    expect(d.client('NOOP')).toEqual(['S: NOOP\r\n']);
    d.server('200 ok');
    expect(d.client('AUTH TLS')).toEqual([PROXY_234, CLIENT_START]);
    d.tlsOk();
    d.login();
  });

  it('implicit FTPS on the client leg (port 990): TLS from the start, AUTH refused, PROT answered', () => {
    const d = new Drive(machine('accept', 'none', { clientImplicit: true })).greet();
    expect(d.m.legs).toEqual({ client: true, server: false });
    expect(d.client('AUTH TLS')).toEqual(['C: 503 TLS is already active on this connection\r\n']);
    expect(d.client('PBSZ 0')).toEqual(['C: 200 PBSZ=0\r\n']);
  });
});

describe('(g) a TLS handshake that fails ends the session', () => {
  it('on the server leg: a 421 naming the error (one line, printable), then close', () => {
    const d = new Drive(machine('accept', 'forward')).greet();
    d.client('AUTH TLS');
    d.server('234 go');
    expect(d.tlsFail('CERT_HAS_EXPIRED: certificate has expired')).toEqual(['C: 421 TLS with the server failed: CERT_HAS_EXPIRED: certificate has expired\r\n', 'close']);
    expect(d.last).toContainEqual(expect.objectContaining({ type: 'log', level: LOG_ERR, event: 'tls-failed', fields: { leg: 'server' } }));
    expect(d.client('USER x')).toEqual([]);
    expect(d.server('200 late')).toEqual([]);
  });

  it('on the server leg, an error with CR/LF and control bytes cannot split the reply', () => {
    const d = new Drive(machine('none', 'require'));
    d.server('220 ready');
    d.server('234 go');
    expect(d.tlsFail('bad\r\n230 logged in\x01')).toEqual(['C: 421 TLS with the server failed: bad 230 logged in?\r\n', 'close']);
  });

  it('on the client leg: close (the client speaks TLS now: no reply can be read)', () => {
    const d = new Drive(machine('accept', 'none')).greet();
    d.client('AUTH TLS');
    expect(d.tlsFail('wrong version number')).toEqual(['close']);
    expect(d.last).toContainEqual(expect.objectContaining({ type: 'log', event: 'tls-failed', fields: { leg: 'client' } }));
  });

  it('CCC whose TLS shutdown fails: close, logged as a shutdown', () => {
    const d = acceptTls().login();
    d.client('CCC');
    expect(d.tlsFail('EPIPE')).toEqual(['close']);
    expect(d.last).toContainEqual(expect.objectContaining({ type: 'log', message: '#7 TLS shutdown with the client failed: EPIPE', event: 'tls-failed' }));
    expect(d.client('PASV')).toEqual([]);
  });

  it('a tlsDone with an id that is not the one in flight does nothing', () => {
    const d = new Drive(machine('accept', 'none')).greet();
    d.client('AUTH TLS');
    expect(d.m.tlsDone(d.tlsId + 100, { ok: true })).toEqual([]);
    expect(d.m.legs.client).toBe(false);
  });
});

describe('(h) tls_client passthrough', () => {
  const RANGE = { passthroughPorts: { low: 50000, high: 50100 } };

  it('AUTH goes on as sent; the 234 is held until the range pinhole is in, then the session goes blind', () => {
    const d = new Drive(machine('passthrough', 'none', RANGE)).greet();
    expect(d.client('auth tls')).toEqual(['S: auth tls\r\n']);
    expect(d.client('USER x')).toEqual([]); // never seen by the machine again (the session relays it blind)
    expect(d.server('234 AUTH TLS successful')).toEqual([{ negotiate: { kind: 'passthrough', low: 50000, high: 50100 } }]);
    expect(d.negotiated(0)).toEqual(['C: 234 AUTH TLS successful\r\n', { type: 'blind' }]);
    expect(d.last).toContainEqual(expect.objectContaining({ type: 'log', event: 'passthrough', fields: { low: 50000, high: 50100 } }));
    expect(d.client('PASV')).toEqual([]);
    expect(d.server('227 x')).toEqual([]);
  });

  it('a multi-line 234 is held whole and sent whole', () => {
    const d = new Drive(machine('passthrough', 'none', RANGE)).greet();
    d.client('AUTH TLS');
    expect(d.server('234-first')).toEqual([]);
    expect(d.server('234 second')).toEqual([{ negotiate: { kind: 'passthrough', low: 50000, high: 50100 } }]);
    expect(d.negotiated(0)).toEqual(['C: 234-first\r\n', 'C: 234 second\r\n', { type: 'blind' }]);
  });

  it('the firewall refuses the range pinhole: 421 and close (the server waits for a ClientHello)', () => {
    const d = new Drive(machine('passthrough', 'none', RANGE)).greet();
    d.client('AUTH TLS');
    d.server('234 go');
    expect(d.refused('EPERM')).toEqual(['C: 421 The firewall refused the TLS pass-through pinhole, closing control connection.\r\n', 'close']);
  });

  it('the server refuses AUTH: relayed, no pinhole, the session goes on in plain text', () => {
    const d = new Drive(machine('passthrough', 'none', RANGE)).greet();
    d.client('AUTH TLS');
    expect(d.server('500 AUTH not understood')).toEqual(['C: 500 AUTH not understood\r\n']);
    expect(d.m.clientBlocked).toBe(false);
    d.login();
    d.client('PASV');
    expect(d.server(PASV_227)).toEqual([{ negotiate: { kind: 'passive', command: 'PASV', serverPort: 50000 } }]);
  });

  it('no range for this server: 534, nothing to the server', () => {
    const d = new Drive(machine('passthrough', 'none')).greet();
    expect(d.client('AUTH TLS')).toEqual(["C: 534 AUTH refused: no tls_passthrough_ports for this server in the proxy's policy\r\n"]);
  });

  it.each(['PORT 192,168,1,10,156,187', 'EPRT |1|192.168.1.10|40123|'])('%s is refused with 502 (active mode cannot pass blind)', (line) => {
    const d = new Drive(machine('passthrough', 'none', RANGE)).greet().login();
    const verb = line.split(' ')[0];
    expect(d.client(line)).toEqual([`C: 502 ${verb} refused: active mode cannot pass through TLS unread (tls_client passthrough), use PASV or EPSV\r\n`]);
  });

  it('PBSZ/PROT/CCC before AUTH go to the server (it answers them)', () => {
    const d = new Drive(machine('passthrough', 'none', RANGE)).greet();
    expect(d.client('PBSZ 0')).toEqual(['S: PBSZ 0\r\n']);
  });
});

describe('(i) FEAT', () => {
  const FEAT = ['211-Features:', ' AUTH TLS', ' AUTH SSL', ' PBSZ', ' PROT', ' CCC', ' MDTM', ' EPSV', '211 End'];
  const featReply = (d: Drive): Short[] => FEAT.flatMap((l) => d.server(l));

  it.each<[TlsClientMode, TlsServerMode]>([
    ['accept', 'none'],
    ['accept', 'forward'],
    ['require', 'none'],
  ])('tls_client %s (tls_server %s): the server\'s AUTH/PBSZ/PROT/CCC go, the proxy\'s come before the end line', (client, server) => {
    const d = new Drive(machine(client, server)).greet();
    expect(d.client('FEAT')).toEqual(['S: FEAT\r\n']);
    expect(featReply(d)).toEqual(['C: 211-Features:\r\n', 'C:  MDTM\r\n', 'C:  EPSV\r\n', 'C:  AUTH TLS\r\n PBSZ\r\n PROT\r\n CCC\r\n', 'C: 211 End\r\n']);
  });

  it('tls_client accept: a one-line 211 becomes a multi-line one listing them', () => {
    const d = new Drive(machine('accept', 'none')).greet();
    d.client('FEAT');
    expect(d.server('211 no features')).toEqual(['C: 211-no features\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n CCC\r\n211 End\r\n']);
  });

  it('tls_client passthrough: the server\'s lines stay (it answers AUTH), the proxy adds none', () => {
    const d = new Drive(machine('passthrough', 'none', { passthroughPorts: { low: 50000, high: 50100 } })).greet();
    d.client('FEAT');
    expect(featReply(d)).toEqual(FEAT.map((l) => `C: ${l}\r\n`));
    d.client('FEAT');
    expect(d.server('211 no features')).toEqual(['C: 211 no features\r\n']);
  });

  it.each<TlsServerMode>(['none', 'require'])('tls_client none (tls_server %s): dropped, none added', (server) => {
    const d = new Drive(machine('none', server));
    d.server('220 ready');
    if (server === 'require') {
      d.server('234 go');
      d.tlsOk();
      d.server('200 PBSZ=0');
      d.server('200 PROT now Private.');
    }
    d.client('FEAT');
    expect(featReply(d)).toEqual(['C: 211-Features:\r\n', 'C:  MDTM\r\n', 'C:  EPSV\r\n', 'C: 211 End\r\n']);
  });

  it('tls_client require: FEAT is answered before AUTH (RFC 4217 clients ask it first)', () => {
    const d = new Drive(machine('require', 'none')).greet();
    expect(d.client('FEAT')).toEqual(['S: FEAT\r\n']);
    expect(d.server('211 no features')).toEqual(['C: 211-no features\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n CCC\r\n211 End\r\n']);
  });
});

describe('data_mode joins carry the legs\' PROT P', () => {
  const withDataMode = (mode: 'passive' | 'active'): Policy => policy(`data_mode ${mode}\n`);

  it('data_mode passive, PROT P, client PORT: the server is asked PASV and the join-connect has TLS on both legs', () => {
    const d = new Drive(machine('accept', 'forward', { policy: withDataMode('passive') })).greet();
    d.client('AUTH TLS');
    d.server('234 go');
    d.tlsOk();
    d.tlsOk();
    d.client('PROT P');
    d.server('200 ok');
    expect(d.client('PORT 192,168,1,10,156,187')).toEqual(['S: PASV\r\n']);
    expect(d.server(PASV_227)).toEqual([{ join: { kind: 'join-connect', command: 'PORT', clientPort: 40123, serverPort: 50000, tls: { client: true, server: true } } }]);
    expect(d.negotiated(0)).toEqual(['C: 200 PORT command successful\r\n']);
  });

  it('data_mode active, PROT P on the client leg only, client PASV: the join-listen has TLS on the client leg', () => {
    const d = new Drive(machine('accept', 'none', { policy: withDataMode('active') })).greet();
    d.client('AUTH TLS');
    d.tlsOk();
    d.client('PROT P');
    expect(d.client('PASV')).toEqual([{ join: { kind: 'join-listen', command: 'PASV', tls: { client: true, server: false } } }]);
    expect(d.take(d.m.negotiationDone(d.negId, { ok: true, proxyPort: 50001, clientPort: 50002 }))).toEqual(['S: PORT 203,0,113,5,195,81\r\n']);
    expect(d.server('200 PORT command successful')).toEqual(['C: 227 Entering Passive Mode (198,51,100,21,195,82)\r\n']);
  });

  it('data_mode passive, PROT P, client EPSV to a server without EPSV: the PASV fallback\'s 227 becomes a relay-passive join answered with 229', () => {
    const d = new Drive(machine('accept', 'none', { policy: withDataMode('passive') })).greet();
    d.client('AUTH TLS');
    d.tlsOk();
    d.client('PROT P');
    expect(d.client('EPSV')).toEqual(['S: EPSV\r\n']);
    expect(d.server('500 EPSV not understood')).toEqual(['S: PASV\r\n']);
    expect(d.server(PASV_227)).toEqual([{ join: { kind: 'relay-passive', command: 'EPSV', serverPort: 50000, tls: { client: true, server: false } } }]);
    expect(d.negotiated(55000)).toEqual(['C: 229 Entering Extended Passive Mode (|||55000|)\r\n']);
  });

  it('data_mode passive, PROT C: the join-connect carries no TLS', () => {
    const d = new Drive(machine('accept', 'none', { policy: withDataMode('passive') })).greet();
    d.client('AUTH TLS');
    d.tlsOk();
    d.client('PROT C');
    d.client('PORT 192,168,1,10,156,187');
    expect(d.server(PASV_227)).toEqual([{ join: { kind: 'join-connect', command: 'PORT', clientPort: 40123, serverPort: 50000 } }]);
  });
});

describe('implicit FTPS to the server (port 990)', () => {
  it('tls_client accept, tls_server forward: the server leg is TLS from the start, the proxy protects its data, AUTH is the proxy\'s, PBSZ/PROT go on', () => {
    const d = new Drive(machine('accept', 'forward', { serverImplicit: true }));
    expect(d.m.legs).toEqual({ client: false, server: true });
    expect(d.server('220 ready')).toEqual(['C: 220 ready\r\n', 'S: PBSZ 0\r\n']);
    expect(d.client('AUTH TLS')).toEqual([]); // waits for the proxy's own PBSZ/PROT
    expect(d.server('200 PBSZ=0')).toEqual(['S: PROT P\r\n']);
    expect(d.server('200 PROT now Private.')).toEqual([PROXY_234, CLIENT_START]);
    d.tlsOk();
    expect(d.client('PBSZ 0')).toEqual(['S: PBSZ 0\r\n']);
  });

  it('tls_server require: no AUTH TLS after the greeting (the leg is TLS already)', () => {
    const d = new Drive(machine('none', 'require', { serverImplicit: true }));
    expect(d.server('220 ready')[1]).not.toBe('S: AUTH TLS\r\n');
  });

  // Helper F's finding (fixed): with implicit FTPS to the server the proxy sent neither AUTH (right) nor
  // PBSZ 0 and PROT P, so a plain client's data to the server stayed clear (servers forcing data TLS, such
  // as vsftpd's force_local_data_ssl, refuse every transfer with 522).
  it('tls_server require, implicit: PBSZ 0 and PROT P after the greeting, for a plain client', () => {
    const d = new Drive(machine('none', 'require', { serverImplicit: true }));
    expect(d.server('220 ready')).toEqual(['C: 220 ready\r\n', 'S: PBSZ 0\r\n']);
    expect(d.server('200 PBSZ=0')).toEqual(['S: PROT P\r\n']);
  });
});

describe('tls_client none, tls_server require: the server leg\'s TLS is the proxy\'s, not the client\'s', () => {
  function afterSetUp(): Drive {
    const d = new Drive(machine('none', 'require'));
    d.server('220 ready');
    d.server('234 go');
    d.tlsOk();
    d.server('200 PBSZ=0');
    d.server('200 PROT now Private.');
    return d.login();
  }

  it('AUTH from the plain client: the gate\'s 504 (tls_client none)', () => {
    expect(afterSetUp().client('AUTH TLS')).toEqual(['C: 504 AUTH not supported through ftp-proxy, use plain FTP\r\n']);
  });

  // Helper F's finding (fixed): with tls_client none, PBSZ/PROT/CCC went on to the server even when its
  // leg was TLS because the proxy made it so: "PROT C" left the server expecting clear data while the
  // relay spoke TLS to it, "CCC" dropped the server's TLS under the proxy. Now answered locally.
  it.each(['PROT C', 'PBSZ 0', 'CCC'])('%s from the plain client is not sent to the server', (line) => {
    const out = afterSetUp().client(line);
    expect(out.filter((a) => typeof a === 'string' && a.startsWith('S:'))).toEqual([]);
  });
});

describe('implicit FTPS from the client (port 990) to a server on an explicit port (-p 990 -R server -P 21)', () => {
  // Helper F's finding (fixed): the client leg is TLS from its first byte and never sends AUTH, so the
  // proxy is the one to make the server leg TLS (tls_server require, and forward: "TLS to the server
  // exactly when the client leg is TLS"); the server leg stayed plain.
  it.each<TlsServerMode>(['require', 'forward'])('tls_server %s: AUTH TLS to the server after the greeting', (server) => {
    const d = new Drive(machine('accept', server, { clientImplicit: true }));
    expect(d.m.legs).toEqual({ client: true, server: false });
    expect(d.server('220 ready')).toEqual(['C: 220 ready\r\n', 'S: AUTH TLS\r\n']);
    expect(d.server('234 go')).toEqual([SERVER_START]);
    d.tlsOk();
    expect(d.m.legs).toEqual({ client: true, server: true });
  });

  it('tls_server none: the server leg stays plain (one-sided)', () => {
    const d = new Drive(machine('accept', 'none', { clientImplicit: true }));
    expect(d.server('220 ready')).toEqual(['C: 220 ready\r\n']);
    expect(d.client('PBSZ 0')).toEqual(['C: 200 PBSZ=0\r\n']);
  });
});
