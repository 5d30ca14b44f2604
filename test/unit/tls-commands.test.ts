// The verdicts of src/ftp/tls-commands.ts (AUTH, PBSZ, PROT, CCC, REIN and tls_client require's 530),
// table-driven over every tls_client x tls_server mode and state of the two legs that changes one.
import { describe, expect, it } from 'vitest';
import { type ControlOptions, FtpControl } from '../../src/ftp/control.js';
import { BEFORE_AUTH, serverFollows, tlsCommand, type TlsLegState, type TlsVerdict } from '../../src/ftp/tls-commands.js';
import { defaultPolicy } from '../../src/policy/parse.js';
import type { TlsClientMode, TlsServerMode } from '../../src/policy/tls.js';
import { V4 } from '../helpers/control.js';

/** The legs of a session: what each says about clientTls/clientSecured/serverTls/userSent. */
const LEGS = {
  plain: {},
  /** after AUTH TLS (or implicit FTPS on the client leg) */
  tls: { clientTls: true, clientSecured: true },
  /** after AUTH TLS and CCC: the client leg is plain again */
  cleared: { clientSecured: true },
  /** both legs TLS (forward or require after the client's AUTH) */
  both: { clientTls: true, clientSecured: true, serverTls: true },
  /** the server leg alone (tls_server require for a plain client, or implicit 990 to the server) */
  server: { serverTls: true },
  user: { userSent: true },
  tlsUser: { clientTls: true, clientSecured: true, userSent: true },
} satisfies Record<string, Partial<TlsLegState>>;
type Legs = keyof typeof LEGS;

const state = (client: TlsClientMode, server: TlsServerMode, legs: Legs, range = false): TlsLegState => ({
  client,
  server,
  clientTls: false,
  clientSecured: false,
  serverTls: false,
  userSent: false,
  passthroughRange: range,
  ...LEGS[legs],
});

const PASS: TlsVerdict = { act: 'pass' };
const reply = (text: string): TlsVerdict => ({ act: 'reply', text: `${text}\r\n` });
const REFUSE_530 = reply('530 This proxy requires FTPS: send AUTH TLS first');

type Row = [TlsClientMode, TlsServerMode, Legs, string, string, TlsVerdict];
const run = ([client, server, legs, verb, arg, want]: Row): void => {
  expect(tlsCommand(verb, arg, state(client, server, legs))).toEqual(want);
};

describe('AUTH (tls_client accept and require)', () => {
  it.each<Row>([
    // the mechanisms of RFC 4217 (curl tries SSL first), any case, spaces around
    ['accept', 'none', 'plain', 'AUTH', 'TLS', { act: 'auth-local' }],
    ['accept', 'none', 'plain', 'AUTH', 'SSL', { act: 'auth-local' }],
    ['accept', 'none', 'plain', 'AUTH', 'TLS-C', { act: 'auth-local' }],
    ['accept', 'none', 'plain', 'AUTH', 'TLS-P', { act: 'auth-local' }],
    ['accept', 'none', 'plain', 'AUTH', 'tls', { act: 'auth-local' }],
    ['accept', 'none', 'plain', 'AUTH', ' TLS ', { act: 'auth-local' }],
    ['require', 'none', 'plain', 'AUTH', 'TLS', { act: 'auth-local' }],
    // anything else: 504, and the reply says what to use
    ['accept', 'none', 'plain', 'AUTH', 'GSSAPI', reply('504 AUTH mechanism not supported, use AUTH TLS')],
    ['accept', 'none', 'plain', 'AUTH', 'TLSX', reply('504 AUTH mechanism not supported, use AUTH TLS')],
    ['accept', 'none', 'plain', 'AUTH', '', reply('504 AUTH mechanism not supported, use AUTH TLS')],
    ['require', 'forward', 'plain', 'AUTH', 'KERBEROS_V4', reply('504 AUTH mechanism not supported, use AUTH TLS')],
    // the server leg to become TLS too: the server first (a minted certificate mirrors the server's)
    ['accept', 'forward', 'plain', 'AUTH', 'TLS', { act: 'auth-server' }],
    ['accept', 'require', 'plain', 'AUTH', 'SSL', { act: 'auth-server' }],
    ['require', 'forward', 'plain', 'AUTH', 'TLS', { act: 'auth-server' }],
    ['require', 'require', 'plain', 'AUTH', 'TLS', { act: 'auth-server' }],
    // ...unless it already is (tls_server require's own AUTH, or implicit FTPS to the server)
    ['accept', 'require', 'server', 'AUTH', 'TLS', { act: 'auth-local' }],
    ['accept', 'forward', 'server', 'AUTH', 'TLS', { act: 'auth-local' }],
    ['require', 'require', 'server', 'AUTH', 'TLS', { act: 'auth-local' }],
    // tls_server none: the client leg alone (one-sided), even if the server leg is TLS by its port
    ['accept', 'none', 'server', 'AUTH', 'TLS', { act: 'auth-local' }],
    // a second AUTH, AUTH after CCC, AUTH after USER: 503
    ['accept', 'none', 'tls', 'AUTH', 'TLS', reply('503 TLS is already active on this connection')],
    ['accept', 'forward', 'both', 'AUTH', 'TLS', reply('503 TLS is already active on this connection')],
    ['require', 'none', 'tls', 'AUTH', 'SSL', reply('503 TLS is already active on this connection')],
    ['accept', 'none', 'cleared', 'AUTH', 'TLS', reply('503 AUTH after CCC is not supported')],
    ['require', 'forward', 'cleared', 'AUTH', 'TLS', reply('503 AUTH after CCC is not supported')],
    ['accept', 'none', 'user', 'AUTH', 'TLS', reply('503 AUTH must come before USER')],
    ['accept', 'forward', 'user', 'AUTH', 'TLS', reply('503 AUTH must come before USER')],
    // the order of the checks: "already" before "after USER", "after USER" before the mechanism
    ['accept', 'none', 'tlsUser', 'AUTH', 'TLS', reply('503 TLS is already active on this connection')],
    ['accept', 'none', 'user', 'AUTH', 'GSSAPI', reply('503 AUTH must come before USER')],
  ])('%s/%s, legs %s: %s %j -> %j', (...row) => run(row));
});

describe('PBSZ', () => {
  it.each<Row>([
    ['accept', 'none', 'plain', 'PBSZ', '0', reply('503 PBSZ needs AUTH TLS first')],
    ['require', 'none', 'plain', 'PBSZ', '0', reply('503 PBSZ needs AUTH TLS first')], // not require's 530
    ['accept', 'require', 'server', 'PBSZ', '0', reply('503 PBSZ needs AUTH TLS first')], // the client leg is what counts
    ['accept', 'none', 'tls', 'PBSZ', 'zero', reply('501 PBSZ needs a number')],
    ['accept', 'none', 'tls', 'PBSZ', '', reply('501 PBSZ needs a number')],
    ['accept', 'none', 'tls', 'PBSZ', '-1', reply('501 PBSZ needs a number')],
    ['accept', 'forward', 'both', 'PBSZ', '0x10', reply('501 PBSZ needs a number')],
    // the server leg plain: the proxy answers; TLS: the server does
    ['accept', 'none', 'tls', 'PBSZ', '0', { act: 'pbsz-local' }],
    ['accept', 'none', 'tls', 'PBSZ', ' 0 ', { act: 'pbsz-local' }],
    ['require', 'none', 'tls', 'PBSZ', '16384', { act: 'pbsz-local' }],
    ['accept', 'none', 'cleared', 'PBSZ', '0', { act: 'pbsz-local' }],
    ['accept', 'forward', 'both', 'PBSZ', '0', PASS],
    ['require', 'require', 'both', 'PBSZ', '0', PASS],
  ])('%s/%s, legs %s: %s %j -> %j', (...row) => run(row));
});

describe('PROT', () => {
  it.each<Row>([
    ['accept', 'none', 'plain', 'PROT', 'P', reply('503 PROT needs AUTH TLS first')],
    ['require', 'forward', 'plain', 'PROT', 'P', reply('503 PROT needs AUTH TLS first')],
    ['accept', 'none', 'tls', 'PROT', 'C', { act: 'prot-local', level: 'C' }],
    ['accept', 'none', 'tls', 'PROT', 'P', { act: 'prot-local', level: 'P' }],
    ['accept', 'none', 'tls', 'PROT', 'p', { act: 'prot-local', level: 'P' }],
    ['accept', 'none', 'cleared', 'PROT', 'C', { act: 'prot-local', level: 'C' }],
    ['accept', 'forward', 'both', 'PROT', 'P', { act: 'prot-forward', level: 'P' }],
    ['accept', 'forward', 'both', 'PROT', 'C', { act: 'prot-forward', level: 'C' }],
    ['require', 'require', 'both', 'PROT', 'P', { act: 'prot-forward', level: 'P' }],
    // S and E are RFC 2228 levels nobody implements: 536; anything else: 504
    ['accept', 'none', 'tls', 'PROT', 'S', reply('536 Protection level S not supported, use C or P')],
    ['accept', 'forward', 'both', 'PROT', 'E', reply('536 Protection level E not supported, use C or P')],
    ['accept', 'none', 'tls', 'PROT', 'X', reply('504 PROT needs C or P')],
    ['accept', 'none', 'tls', 'PROT', '', reply('504 PROT needs C or P')],
    ['accept', 'none', 'tls', 'PROT', 'PC', reply('504 PROT needs C or P')],
  ])('%s/%s, legs %s: %s %j -> %j', (...row) => run(row));
});

describe('CCC and REIN', () => {
  it.each<Row>([
    ['accept', 'none', 'tls', 'CCC', '', { act: 'ccc' }],
    ['accept', 'forward', 'both', 'CCC', '', { act: 'ccc' }],
    ['require', 'none', 'tls', 'CCC', '', { act: 'ccc' }],
    ['accept', 'none', 'plain', 'CCC', '', reply('533 Control channel is not protected')],
    ['accept', 'none', 'cleared', 'CCC', '', reply('533 Control channel is not protected')],
    ['accept', 'require', 'server', 'CCC', '', reply('533 Control channel is not protected')], // only the client leg can be cleared
    ['require', 'none', 'plain', 'CCC', '', reply('533 Control channel is not protected')], // not require's 530
    // REIN: refused while either leg is TLS, whatever tls_client says
    ['accept', 'none', 'tls', 'REIN', '', reply('502 REIN not allowed under TLS through ftp-proxy')],
    ['accept', 'forward', 'both', 'REIN', '', reply('502 REIN not allowed under TLS through ftp-proxy')],
    ['accept', 'require', 'server', 'REIN', '', reply('502 REIN not allowed under TLS through ftp-proxy')],
    ['none', 'require', 'server', 'REIN', '', reply('502 REIN not allowed under TLS through ftp-proxy')],
    ['require', 'require', 'server', 'REIN', '', reply('502 REIN not allowed under TLS through ftp-proxy')], // before require's 530
    // ...and passed on without TLS
    ['accept', 'none', 'plain', 'REIN', '', PASS],
    ['accept', 'none', 'cleared', 'REIN', '', reply('502 REIN not allowed under TLS through ftp-proxy')], // after CCC: the PROT set under TLS would outlive the reset
    ['none', 'none', 'plain', 'REIN', '', PASS],
    ['passthrough', 'none', 'plain', 'REIN', '', PASS],
  ])('%s/%s, legs %s: %s %j -> %j', (...row) => run(row));
});

describe('tls_client require: 530 before AUTH, except AUTH, FEAT, HELP, QUIT, NOOP', () => {
  it.each<Row>([
    ['require', 'none', 'plain', 'USER', 'x', REFUSE_530],
    ['require', 'none', 'plain', 'PASS', 'x', REFUSE_530],
    ['require', 'none', 'plain', 'PASV', '', REFUSE_530],
    ['require', 'none', 'plain', 'EPSV', '', REFUSE_530],
    ['require', 'none', 'plain', 'PORT', '192,168,1,10,156,187', REFUSE_530],
    ['require', 'none', 'plain', 'LIST', '', REFUSE_530],
    ['require', 'none', 'plain', 'SYST', '', REFUSE_530],
    ['require', 'none', 'plain', 'REIN', '', REFUSE_530],
    ['require', 'forward', 'plain', 'USER', 'x', REFUSE_530],
    ['require', 'require', 'server', 'USER', 'x', REFUSE_530], // the server leg's TLS is not the client's
    ['require', 'none', 'plain', 'FEAT', '', PASS],
    ['require', 'none', 'plain', 'HELP', '', PASS],
    ['require', 'none', 'plain', 'HELP', 'AUTH', PASS],
    ['require', 'none', 'plain', 'QUIT', '', PASS],
    ['require', 'none', 'plain', 'NOOP', '', PASS],
    ['require', 'forward', 'server', 'NOOP', '', PASS],
    // once the client leg is TLS, or was (CCC keeps the login protected), everything goes on
    ['require', 'none', 'tls', 'USER', 'x', PASS],
    ['require', 'none', 'tls', 'PASV', '', PASS],
    ['require', 'forward', 'both', 'LIST', '', PASS],
    ['require', 'none', 'cleared', 'RETR', 'f', PASS],
    // accept lets plain commands through
    ['accept', 'none', 'plain', 'USER', 'x', PASS],
    ['accept', 'forward', 'plain', 'PASV', '', PASS],
  ])('%s/%s, legs %s: %s %j -> %j', (...row) => run(row));

  it('BEFORE_AUTH is exactly the five commands the issue names', () => {
    expect([...BEFORE_AUTH].sort()).toEqual(['AUTH', 'FEAT', 'HELP', 'NOOP', 'QUIT']);
  });
});

describe('tls_client passthrough: AUTH goes to the server when a range is known; all else passes', () => {
  it.each<[string, string, boolean, TlsVerdict]>([
    ['AUTH', 'TLS', true, { act: 'auth-passthrough' }],
    ['AUTH', 'SSL', true, { act: 'auth-passthrough' }],
    ['AUTH', 'tls', true, { act: 'auth-passthrough' }],
    ['AUTH', 'TLS', false, reply("534 AUTH refused: no tls_passthrough_ports for this server in the proxy's policy")],
    ['AUTH', 'SSL', false, reply("534 AUTH refused: no tls_passthrough_ports for this server in the proxy's policy")],
    ['AUTH', 'GSSAPI', true, reply('504 AUTH mechanism not supported')],
    ['AUTH', '', false, reply('504 AUTH mechanism not supported')],
    ['PBSZ', '0', true, PASS],
    ['PROT', 'P', true, PASS],
    ['CCC', '', true, PASS],
    ['USER', 'x', true, PASS],
    ['PASV', '', false, PASS],
    ['PORT', '1,2,3,4,5,6', true, PASS], // refused by FtpControl (active mode cannot pass blind), not here
    ['REIN', '', true, PASS],
  ])('%s %j (range %s) -> %j', (verb, arg, range, want) => {
    expect(tlsCommand(verb, arg, state('passthrough', 'none', 'plain', range))).toEqual(want);
    // what was said before (a refused AUTH) does not change it
    expect(tlsCommand(verb, arg, state('passthrough', 'none', 'user', range))).toEqual(want);
  });
});

describe('tls_client none: nothing is a TLS matter for the state machine, unless the server leg is the proxy\'s TLS', () => {
  it.each<[TlsServerMode, Legs, string, string]>([
    ['none', 'plain', 'AUTH', 'TLS'],
    ['none', 'plain', 'PBSZ', '0'],
    ['none', 'plain', 'PROT', 'P'],
    ['none', 'plain', 'CCC', ''],
    ['none', 'plain', 'USER', 'x'],
    ['require', 'server', 'AUTH', 'TLS'],
    ['require', 'server', 'USER', 'x'],
    ['forward', 'plain', 'AUTH', 'TLS'],
  ])('tls_server %s, legs %s: %s %j passes', (server, legs, verb, arg) => {
    expect(tlsCommand(verb, arg, state('none', server, legs))).toEqual(PASS);
  });

  // The server leg is TLS because the proxy made it so (tls_server require, or implicit FTPS to the
  // server): a plain client must not change its data protection or clear it under the relay (helper F's
  // finding; passed on to the server before).
  it.each<[TlsClientMode, TlsServerMode, string, string, TlsVerdict]>([
    ['none', 'require', 'PBSZ', '0', reply('503 PBSZ needs AUTH TLS first')],
    ['none', 'require', 'PROT', 'C', reply('503 PROT needs AUTH TLS first')],
    ['none', 'require', 'PROT', 'P', reply('503 PROT needs AUTH TLS first')],
    ['none', 'require', 'CCC', '', reply('533 Control channel is not protected')],
    ['none', 'forward', 'PROT', 'C', reply('503 PROT needs AUTH TLS first')], // forward on an implicit (990) server
    ['accept', 'require', 'PROT', 'C', reply('503 PROT needs AUTH TLS first')],
  ])('tls_client %s, tls_server %s, the server leg alone TLS: %s %j -> %j', (client, server, verb, arg, want) => {
    expect(tlsCommand(verb, arg, state(client, server, 'server'))).toEqual(want);
  });

  // The command gate refuses AUTH with tls_client none before the TLS verdicts are asked.
  function machine(opts: Partial<ControlOptions> = {}): FtpControl {
    return new FtpControl(7, V4, { anonymousOnly: false, debug: false, firewallName: 'nftables', policy: defaultPolicy(), ...opts });
  }
  const text = (as: ReturnType<FtpControl['clientLine']>, type: 'toClient' | 'toServer'): string[] =>
    as.flatMap((a) => (a.type === type ? [a.data.toString('latin1')] : []));

  it.each(['AUTH TLS\r\n', 'AUTH SSL\r\n', 'auth tls\r\n', 'AUTH GSSAPI\r\n'])('through FtpControl: %j gets the gate\'s 504 and never reaches the server', (line) => {
    for (const tls of [undefined, { client: 'none' as const, server: 'none' as const, clientImplicit: false, serverImplicit: false }]) {
      const m = machine(tls ? { tls } : {});
      m.serverLine(Buffer.from('220 ready\r\n'));
      const out = m.clientLine(Buffer.from(line));
      expect(text(out, 'toServer')).toEqual([]);
      expect(text(out, 'toClient')).toEqual(['504 AUTH not supported through ftp-proxy, use plain FTP\r\n']);
      expect(out.some((a) => a.type === 'tls')).toBe(false);
      expect(m.legs).toEqual({ client: false, server: false });
    }
  });

  it('through FtpControl: PBSZ, PROT and CCC go to the server as they are (it answers them)', () => {
    const m = machine();
    m.serverLine(Buffer.from('220 ready\r\n'));
    for (const line of ['PBSZ 0\r\n', 'PROT P\r\n', 'CCC\r\n']) expect(text(m.clientLine(Buffer.from(line)), 'toServer')).toEqual([line]);
  });
});

describe('serverFollows', () => {
  it.each<[TlsServerMode, boolean]>([
    ['none', false],
    ['forward', true],
    ['require', true],
  ])('tls_server %s -> %s', (mode, want) => expect(serverFollows(mode)).toBe(want));
});
