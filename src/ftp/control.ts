// The FTP control-channel state machine of one session. Pure: lines in, actions out. No sockets, no
// timers, no firewall; the session (src/session.ts) carries out the actions and reports back the result
// of each firewall negotiation with negotiationDone().
//
// What it does, on top of relaying lines unchanged:
//  - PORT/EPRT from the client: ask for an active-mode pinhole, then forward the command rewritten to the
//    proxy's own address and port. The client's address is never used, only its port.
//  - 227/229 replies to PASV/EPSV: ask for a passive-mode pinhole, then send the client a reply naming
//    the address it originally dialled and the proxy port. The server's address is never used.
//  - The line that depends on a pinhole is held back until the firewall has it (lines behind it too).
//  - Commands are tracked in order (pipelining works; multi-line 227/229 replies are understood), so
//    replies the proxy makes up itself (refusals) reach the client in the right place.
//  - The policy (-f, src/policy/) decides which commands go on, what replies and FEAT lines the client
//    gets, the length limits, and whether the server side is forced into passive or active mode; a forced
//    data connection is joined by the session itself ('join' actions).
import type { Family } from '../net/address.js';
import { type Level, LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING } from '../levels.js';
import { format227, format229, formatEprt, formatPort, parse227, parse229, parseEprtArg, parsePortArg } from './port-args.js';
import { gateCommand } from './gate.js';
import { FeatRewriter, gateReply } from './reply-gate.js';
import { type ProtLevel, tlsCommand } from './tls-commands.js';
import { vis } from './vis.js';
import { defaultPolicy, type Policy } from '../policy/parse.js';
import type { Action, DataTls, JoinRequest, LogFields, Negotiation, NegotiationResult, TlsConfig, TlsResult } from './actions.js';

export { splitCommand } from './gate.js';
export type { Action, DataTls, JoinRequest, LogFields, Negotiation, NegotiationResult, TlsConfig, TlsResult } from './actions.js';

/** Ports below this are never negotiated (OpenBSD's MIN_PORT): no bounce to privileged services. */
export const MIN_DATA_PORT = 1024;

/** Most lines a multi-line 227/229 reply may have before the proxy gives up rewriting it. */
const MAX_REPLY_LINES = 16;

/**
 * Commands a client may have outstanding (sent, reply not yet relayed). Memory stays bounded against a
 * client that pipelines without end; the session stops reading the client well before this.
 */
export const MAX_PENDING = 1000;

export interface SessionAddresses {
  /** C: the client, as the proxy's listener sees it. */
  client: string;
  /** OS: the address the client dialled; passive replies name it. */
  originalServer: string;
  /** S: the server the proxy is connected to (OS, or the -R server). */
  server: string;
  /** P: the proxy's own address on its connection to S; PORT/EPRT name it. */
  proxy: string;
  clientFamily: Family;
  serverFamily: Family;
  /** masquerade_client: named in 227 replies instead of OS (an outer NAT takes it to OS). */
  advertiseToClient?: string;
  /** masquerade_server: named in PORT/EPRT instead of P (an outer NAT takes it to P). */
  advertiseToServer?: string;
}

export interface ControlOptions {
  /** -A: only USER ftp / USER anonymous are forwarded. */
  anonymousOnly: boolean;
  /** Emit DEBUG log actions for every line (skipped when -D is below 7: they cost a string each). */
  debug: boolean;
  /**
   * Emit INFO log actions for each negotiation (skipped when -D is below 6: a message and its fields on
   * the reply's path, for nothing). Absent: emitted.
   */
  info?: boolean;
  /** The firewall's name in error messages ("pf", "nftables", "iptables"). */
  firewallName: string;
  /** The session's policy (-f); OpenBSD's behaviour without one. */
  policy?: Policy;
  /** FTPS: the policy's tls_client/tls_server and what this session's ports imply. */
  tls?: TlsConfig;
}

/** A command whose server side differs from what the client asked (data_mode, EPSV fallback). */
type Forced =
  /** The client sent PORT/EPRT; the server got PASV/EPSV; its 227/229 makes a join-connect. */
  | { mode: 'connect'; client: 'PORT' | 'EPRT'; clientPort: number }
  /** The client sent PASV/EPSV; the server got PORT/EPRT to a join-listen; its 2xx makes our 227/229. */
  | { mode: 'listen'; client: 'PASV' | 'EPSV'; clientPort: number }
  /** The client sent PASV/EPSV and the server gets it too, answered in the client's format. */
  | { mode: 'passive'; client: 'PASV' | 'EPSV' };

interface ServerPending {
  kind: 'server';
  /** What the server was sent (changes from EPSV to PASV on a fallback). */
  verb: string;
  forced?: Forced;
  /** data_mode passive: a 5xx to EPSV is answered by trying PASV (IPv4). */
  fallback?: boolean;
  /** The proxy's own command (tls_server require for a plain client): its reply is not the client's. */
  internal?: 'auth' | 'pbsz' | 'prot';
  /** The client's AUTH sent on to the server: its 234 starts TLS there (or the session goes blind). */
  auth?: 'terminate' | 'passthrough';
  /** The client's PROT sent on: a 2xx sets the level of both legs. */
  prot?: ProtLevel;
}

/** `then` goes out right after `data` (the 234 before a TLS handshake, the 200 before CCC). */
type Pending = ServerPending | { kind: 'local'; data: Buffer; then?: { leg: 'client'; op: 'start' | 'stop' } };

interface Inflight {
  id: number;
  negotiation: Negotiation | JoinRequest;
}

interface TlsInflight {
  id: number;
  leg: 'client' | 'server';
  op: 'start' | 'stop';
  /** Why the server leg starts TLS: the proxy's own set-up (require), or the client's AUTH. */
  purpose?: 'setup' | 'client-auth';
}

/** How the lines of the reply being read are handled. */
type ReplyMode =
  | { how: 'relay' }
  /** Held back: a 227/229 to rewrite, a 2xx to a forced PORT, a 5xx to EPSV before the PASV fallback. */
  | { how: 'hold' }
  /** Reply policy `change`: swallowed, the new line goes out at the end. */
  | { how: 'change'; text: string }
  /** A FEAT reply: feature lines filtered, inserts before the last line. */
  | { how: 'feat'; feat: FeatRewriter }
  /** The reply to the proxy's own command, or a 234 it acts on: never the client's to see as it is. */
  | { how: 'swallow' };

export class FtpControl {
  /** Commands sent to the server (or answered locally) whose final reply the client has not had yet. */
  private readonly fifo: Pending[] = [{ kind: 'server', verb: '' }]; // '' = the greeting
  private readonly clientQueue: Buffer[] = [];
  private readonly serverQueue: Buffer[] = [];
  private clientInflight: Inflight | null = null;
  private serverInflight: Inflight | null = null;
  /** Code of the multi-line reply being relayed, if any. */
  private replyCode: string | null = null;
  private replyMode: ReplyMode = { how: 'relay' };
  /** A forced command is at the server: the client's next lines wait for its reply. */
  private clientHold = false;
  /** Between a 1xx and the final reply of its command: a transfer runs, the idle timer rests. */
  private inTransfer = false;
  /** The server has said 230 (logged in): --login-timeout no longer applies. */
  private login = false;
  private readonly policy: Policy;
  /** Lines of a 227/229 reply held back for rewriting. */
  private held: Buffer[] | null = null;
  private heldOverflow = false;
  private nextId = 1;
  private closed = false;
  private readonly tls: TlsConfig;
  /** The client leg speaks TLS now / did at some point (CCC leaves it plain); the server leg does now. */
  private clientTls: boolean;
  private clientSecured: boolean;
  private serverTls: boolean;
  /** PROT of each leg's data connections: P means TLS on that side, hence the userland relay. */
  private clientProt: ProtLevel = 'C';
  private serverProt: ProtLevel = 'C';
  private userSent = false;
  /** TLS set-up in progress (the proxy's own commands, an AUTH, a handshake): the client's lines wait. */
  private tlsHold = false;
  private tlsInflight: TlsInflight | null = null;

  constructor(
    private readonly id: number,
    private readonly addr: SessionAddresses,
    private readonly opts: ControlOptions,
  ) {
    this.policy = opts.policy ?? defaultPolicy();
    this.tls = opts.tls ?? { client: 'none', server: 'none', clientImplicit: false, serverImplicit: false };
    this.clientTls = this.clientSecured = this.tls.clientImplicit;
    this.serverTls = this.tls.serverImplicit;
    // tls_server require: nothing of the client's reaches the server before its leg is TLS, not even a
    // login pipelined ahead of the greeting.
    this.tlsHold = this.serverSetup !== null;
  }

  /** True while a line waits on the firewall; the session stops reading that side meanwhile. */
  get clientBlocked(): boolean {
    return this.clientInflight !== null || this.clientHold || this.tlsHold;
  }

  /**
   * The proxy's own set-up of the server leg after the greeting: AUTH TLS then PBSZ/PROT P (tls_server
   * require; forward behind an implicit FTPS client), or PBSZ/PROT P alone on an implicit FTPS server for
   * a client that is not TLS.
   */
  private get serverSetup(): 'auth' | 'pbsz' | null {
    if (this.tls.serverImplicit) return this.tls.clientImplicit ? null : 'pbsz';
    // An implicit FTPS client never sends AUTH: with forward its leg's TLS calls for the server's too.
    if (this.tls.server === 'require' || (this.tls.server === 'forward' && this.tls.clientImplicit)) return 'auth';
    return null;
  }

  /** Whether each leg's control connection is TLS now (status, logs). */
  get legs(): { client: boolean; server: boolean } {
    return { client: this.clientTls, server: this.serverTls };
  }

  /** The data connections of the next negotiation: through the kernel (null) or the TLS relay. */
  private get dataTls(): DataTls | null {
    const client = this.clientProt === 'P';
    const server = this.serverProt === 'P';
    return client || server ? { client, server } : null;
  }

  /** A transfer is running: the server said 1xx and its final reply has not come yet. */
  get transferring(): boolean {
    return this.inTransfer;
  }

  /** The server has sent a 230 reply: the client logged in. */
  get loggedIn(): boolean {
    return this.login;
  }

  get serverBlocked(): boolean {
    return this.serverInflight !== null || this.tlsInflight?.leg === 'server';
  }

  /**
   * Whether the session should stop reading the client. A line waiting on the firewall stops it only
   * once a later line has had to queue behind it: the usual negotiation (nothing sent meanwhile) then
   * costs no pause and resume, and the queue still holds at most one more read's lines. The other holds
   * (a forced command, TLS set-up) stop it at once: bytes read ahead of a TLS start must stay unread.
   */
  get clientPaused(): boolean {
    return this.clientHold || this.tlsHold || (this.clientInflight !== null && this.clientQueue.length > 0);
  }

  /** Whether the session should stop reading the server (as clientPaused: a reply on the firewall). */
  get serverPaused(): boolean {
    return this.tlsInflight?.leg === 'server' || (this.serverInflight !== null && this.serverQueue.length > 0);
  }

  /** Lines held back behind a pending negotiation, both directions. */
  get queuedLines(): number {
    return this.clientQueue.length + this.serverQueue.length;
  }

  /** Commands whose replies the client has not had yet. */
  get pendingCommands(): number {
    return this.fifo.length;
  }

  clientLine(line: Buffer): Action[] {
    if (this.closed) return [];
    if (this.clientBlocked) {
      this.clientQueue.push(line);
      return [];
    }
    const out: Action[] = [];
    this.processClientLine(line, out);
    return out;
  }

  serverLine(line: Buffer): Action[] {
    if (this.closed) return [];
    if (this.serverBlocked) {
      this.serverQueue.push(line);
      return [];
    }
    const out: Action[] = [];
    this.processServerLine(line, out);
    return out;
  }

  /** A side sent a line that is too long or holds a NUL byte: the session ends (as on OpenBSD). */
  lineError(side: 'client' | 'server', error: 'too-long' | 'nul'): Action[] {
    if (this.closed) return [];
    this.closed = true;
    const what = side === 'client' ? 'client command' : 'server reply';
    const reply =
      side === 'client'
        ? '421 Command line too long or not clean, closing control connection.\r\n'
        : '421 Server reply too long or not clean, closing control connection.\r\n';
    return [
      this.log(LOG_ERR, `${what} too long or not clean`, 'line-refused', { side, error }),
      { type: 'toClient', data: Buffer.from(reply) },
      { type: 'close', reason: `${what} ${error === 'nul' ? 'contains NUL' : 'too long'}` },
    ];
  }

  negotiationDone(id: number, result: NegotiationResult): Action[] {
    if (this.closed) return [];
    const out: Action[] = [];
    if (this.clientInflight?.id === id) {
      const { negotiation } = this.clientInflight;
      this.clientInflight = null;
      if (negotiation.kind === 'active') this.finishActive(negotiation, result, out);
      else if (negotiation.kind === 'join-listen') this.finishJoinListen(negotiation, result, out);
      else if (negotiation.kind === 'relay-active') this.finishActive({ kind: 'active', command: negotiation.command, clientPort: negotiation.clientPort }, result, out, 'TLS relay');
      else throw new Error(`client-side negotiation cannot be ${negotiation.kind}`);
      this.drainClient(out);
    } else if (this.serverInflight?.id === id) {
      const { negotiation } = this.serverInflight;
      this.serverInflight = null;
      if (negotiation.kind === 'passive') this.finishPassive(negotiation, result, out);
      else if (negotiation.kind === 'join-connect') this.finishJoinConnect(negotiation, result, out);
      else if (negotiation.kind === 'relay-passive') this.finishPassive({ kind: 'passive', command: negotiation.command, serverPort: negotiation.serverPort }, result, out, 'TLS relay');
      else if (negotiation.kind === 'passthrough') this.finishPassthrough(negotiation, result, out);
      else throw new Error(`server-side negotiation cannot be ${negotiation.kind}`);
      this.drainServer(out);
      this.drainClient(out);
    }
    return out;
  }

  /** The session carried out a 'tls' action. A failure ends the session (with a reply where one can be read). */
  tlsDone(id: number, result: TlsResult): Action[] {
    if (this.closed || this.tlsInflight?.id !== id) return [];
    const t = this.tlsInflight;
    this.tlsInflight = null;
    const out: Action[] = [];
    if (!result.ok) {
      this.closed = true;
      out.push(this.log(LOG_ERR, `TLS ${t.op === 'start' ? 'handshake' : 'shutdown'} with the ${t.leg} failed: ${vis(result.error)}`, 'tls-failed', { leg: t.leg }));
      // The client leg is still plain while the server's handshake runs: the reason can reach the client.
      if (t.leg === 'server') out.push({ type: 'toClient', data: Buffer.from(`421 TLS with the server failed: ${oneLine(result.error)}\r\n`) });
      out.push({ type: 'close', reason: `TLS with the ${t.leg} failed` });
      return out;
    }
    if (t.leg === 'server') {
      this.serverTls = true;
      if (t.purpose === 'setup') {
        // tls_server require for a plain client: protect its data on the server's side too.
        this.internal('pbsz', 'PBSZ 0', out);
      } else {
        // The client's AUTH: the server leg is TLS, now the client's (its AUTH is still at the head).
        this.popServer();
        this.startClientTls(out);
      }
    } else if (t.op === 'start') {
      this.clientTls = this.clientSecured = true;
      this.tlsHold = false;
    } else {
      this.clientTls = false;
      this.tlsHold = false;
    }
    this.drainServer(out);
    this.drainClient(out);
    return out;
  }

  /** The proxy's 234 to the client, then its TLS handshake (the client's lines wait for it). */
  private startClientTls(out: Action[]): void {
    this.tlsHold = true;
    this.fifo.push({ kind: 'local', data: Buffer.from('234 AUTH TLS successful, start the TLS handshake\r\n'), then: { leg: 'client', op: 'start' } });
    this.flushLocal(out);
  }

  /** A command of the proxy's own to the server; its reply is swallowed (the client's lines wait). */
  private internal(what: 'auth' | 'pbsz' | 'prot', line: string, out: Action[]): void {
    this.tlsHold = true;
    this.fifo.push({ kind: 'server', verb: line.split(' ')[0]!, internal: what });
    if (this.opts.debug) out.push(this.log(LOG_DEBUG, `proxy to server: ${line}`, 'proxy-line'));
    out.push({ type: 'toServer', data: Buffer.from(`${line}\r\n`) });
  }

  private startTls(leg: 'client' | 'server', op: 'start' | 'stop', out: Action[], purpose?: TlsInflight['purpose']): void {
    this.tlsInflight = { id: this.nextId++, leg, op, ...(purpose ? { purpose } : {}) };
    out.push({ type: 'tls', id: this.tlsInflight.id, leg, op });
  }

  /** The reply to one of the proxy's own commands (tls_server require). */
  private internalReply(what: 'auth' | 'pbsz' | 'prot', code: string, out: Action[]): void {
    if (what === 'auth') {
      if (code === '234') {
        this.startTls('server', 'start', out, 'setup');
        return;
      }
      this.closed = true;
      out.push(this.log(LOG_ERR, `the server refused AUTH TLS (${code}), which tls_server require needs`, 'tls-refused', { code }));
      out.push({ type: 'toClient', data: Buffer.from('421 The server does not offer TLS, which this proxy requires, closing control connection.\r\n') });
      out.push({ type: 'close', reason: 'server refused AUTH TLS' });
      return;
    }
    if (what === 'pbsz') {
      this.internal('prot', 'PROT P', out);
      return;
    }
    if (code.startsWith('2')) this.serverProt = 'P';
    else out.push(this.log(LOG_WARNING, `the server refused PROT P (${code}): data to the server stays in the clear`, 'tls-prot-refused', { code }));
    this.tlsHold = false;
  }

  /** The client's AUTH, PBSZ, PROT, CCC or REIN, as the TLS modes and legs make them; true if handled. */
  private tlsCommand(verb: string, arg: string, line: Buffer, out: Action[]): boolean {
    // Plain FTP on both legs: tlsCommand() passes every verb (its refusals need a TLS leg or a TLS mode;
    // AUTH under tls_client none is the gate's), so the state it reads is not built for each line.
    if (this.tls.client === 'none' && !this.clientTls && !this.clientSecured && !this.serverTls) return false;
    const v = tlsCommand(verb, arg, {
      client: this.tls.client,
      server: this.tls.server,
      clientTls: this.clientTls,
      clientSecured: this.clientSecured,
      serverTls: this.serverTls,
      userSent: this.userSent,
      passthroughRange: this.tls.passthroughPorts !== undefined,
    });
    switch (v.act) {
      case 'pass':
        return false;
      case 'reply':
        this.localReply(v.text, out);
        return true;
      case 'auth-local':
        out.push(this.log(LOG_INFO, 'client asks for TLS', 'tls-auth'));
        this.startClientTls(out);
        return true;
      case 'auth-server':
        // TLS with the server first: a minted certificate mirrors the server's.
        out.push(this.log(LOG_INFO, 'client asks for TLS: starting TLS with the server first', 'tls-auth'));
        this.tlsHold = true;
        this.fifo.push({ kind: 'server', verb: 'AUTH', auth: 'terminate' });
        out.push({ type: 'toServer', data: Buffer.from('AUTH TLS\r\n') });
        return true;
      case 'auth-passthrough':
        out.push(this.log(LOG_INFO, 'client asks for TLS: passed through to the server', 'tls-auth'));
        this.tlsHold = true;
        this.fifo.push({ kind: 'server', verb: 'AUTH', auth: 'passthrough' });
        out.push({ type: 'toServer', data: line });
        return true;
      case 'pbsz-local':
        this.localReply('200 PBSZ=0\r\n', out);
        return true;
      case 'prot-local':
        this.clientProt = v.level;
        this.localReply(`200 Protection level set to ${v.level}\r\n`, out);
        return true;
      case 'prot-forward':
        this.fifo.push({ kind: 'server', verb: 'PROT', prot: v.level });
        out.push({ type: 'toServer', data: line });
        return true;
      case 'ccc':
        out.push(this.log(LOG_INFO, 'client clears the control channel (CCC)', 'tls-ccc'));
        this.tlsHold = true;
        this.fifo.push({ kind: 'local', data: Buffer.from('200 CCC command successful, control channel cleared\r\n'), then: { leg: 'client', op: 'stop' } });
        this.flushLocal(out);
        return true;
    }
  }

  /** Passthrough's range pinhole is in: the 234 goes to the client and the session stops reading lines. */
  private finishPassthrough(n: Extract<Negotiation, { kind: 'passthrough' }>, result: NegotiationResult, out: Action[]): void {
    this.closed = true;
    if (!result.ok) {
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${vis(result.error)}`, 'firewall-failed', { command: 'AUTH' }));
      // The server waits for a ClientHello that will never come: the session cannot go on.
      out.push({ type: 'toClient', data: Buffer.from('421 The firewall refused the TLS pass-through pinhole, closing control connection.\r\n') });
      out.push({ type: 'close', reason: 'passthrough pinhole refused' });
      return;
    }
    out.push(this.log(LOG_INFO, `TLS passed through: data ports ${n.low}-${n.high} open to the server for this session`, 'passthrough', { low: n.low, high: n.high }));
    for (const l of this.held ?? []) out.push({ type: 'toClient', data: l });
    this.held = null;
    out.push({ type: 'blind' });
  }

  // ---- client -> server ----

  private processClientLine(line: Buffer, out: Action[]): void {
    if (this.opts.debug) out.push(this.log(LOG_DEBUG, `client: ${vis(line)}`, 'client-line'));
    if (this.fifo.length >= MAX_PENDING) {
      this.closed = true;
      out.push(this.log(LOG_ERR, `too many pipelined commands (${MAX_PENDING} without a reply)`, 'pipeline-limit'));
      out.push({ type: 'toClient', data: Buffer.from('421 Too many commands without a reply, closing control connection.\r\n') });
      out.push({ type: 'close', reason: 'too many pipelined commands' });
      return;
    }
    const gate = gateCommand(line, this.policy, this.opts.anonymousOnly);
    if (!gate.pass) {
      if (gate.log) out.push(this.log(gate.log.level, gate.log.message, gate.log.event, gate.log.fields));
      if (gate.close) {
        this.closed = true;
        out.push({ type: 'toClient', data: Buffer.from(gate.reply) });
        out.push({ type: 'close', reason: gate.close });
      } else {
        this.localReply(gate.reply, out);
      }
      return;
    }
    const { verb, arg } = gate;
    if (this.tlsCommand(verb, arg, line, out)) return;
    if (verb === 'USER') this.userSent = true;
    switch (verb) {
      case 'PASV':
      case 'EPSV':
        if (this.refuseFamily(verb, out)) return;
        if (verb === 'EPSV' && /^all$/i.test(arg)) {
          if (this.policy.dataMode === 'active') {
            // The server will be sent PORT/EPRT, which it would refuse after EPSV ALL.
            this.localReply('200 EPSV ALL command successful\r\n', out);
            return;
          }
          break;
        }
        if (this.policy.dataMode === 'active') {
          this.joinListen(verb, out);
          return;
        }
        if (this.policy.dataMode === 'passive' && verb === 'EPSV' && this.addr.serverFamily === 4) {
          // A server that refuses EPSV is asked PASV; the client still gets its 229. The fallback PASV
          // must reach the server before anything else, so the client's next lines wait.
          this.fifo.push({ kind: 'server', verb, forced: { mode: 'passive', client: 'EPSV' }, fallback: true });
          this.clientHold = true;
          out.push({ type: 'toServer', data: line });
          return;
        }
        break;
      case 'PORT':
      case 'EPRT':
        this.activeCommand(verb, arg, line, out);
        return;
      default:
        break;
    }
    this.toServer(line, verb, out);
  }

  /** data_mode active, the client asked PASV/EPSV: listeners and pinholes first, then PORT/EPRT. */
  private joinListen(verb: 'PASV' | 'EPSV', out: Action[]): void {
    const tls = this.dataTls;
    const join: JoinRequest = { kind: 'join-listen', command: verb, ...(tls ? { tls } : {}) };
    this.clientInflight = { id: this.nextId++, negotiation: join };
    out.push({ type: 'join', id: this.clientInflight.id, join });
  }

  private finishJoinListen(n: Extract<JoinRequest, { kind: 'join-listen' }>, result: NegotiationResult, out: Action[]): void {
    if (!result.ok || result.clientPort === undefined) {
      const error = result.ok ? 'no client port' : result.error;
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${vis(error)}`, 'firewall-failed', { command: n.command }));
      this.localReply(`425 Can't open data connection: the proxy could not prepare the ${n.command} data connection\r\n`, out);
      return;
    }
    const serverVerb = this.addr.serverFamily === 6 ? 'EPRT' : 'PORT';
    const named = this.addr.advertiseToServer ?? this.addr.proxy;
    const line = serverVerb === 'PORT' ? formatPort(named, result.proxyPort) : formatEprt(this.addr.serverFamily, named, result.proxyPort);
    out.push(
      this.log(LOG_INFO, `data mode active: client ${n.command} becomes ${serverVerb}, server to proxy port ${result.proxyPort}, client to proxy port ${result.clientPort}`, 'forced-active', {
        command: n.command,
        proxyPort: result.proxyPort,
        clientPort: result.clientPort,
      }),
    );
    if (this.opts.debug) out.push(this.log(LOG_DEBUG, `proxy: ${vis(line)}`, 'proxy-line'));
    this.fifo.push({ kind: 'server', verb: serverVerb, forced: { mode: 'listen', client: n.command, clientPort: result.clientPort } });
    this.clientHold = true;
    out.push({ type: 'toServer', data: Buffer.from(line) });
  }

  /** data_mode passive, the client sent PORT/EPRT: ask the server for passive mode instead. */
  private forcePassive(verb: 'PORT' | 'EPRT', clientPort: number, out: Action[]): void {
    const serverVerb = verb === 'EPRT' || this.addr.serverFamily === 6 ? 'EPSV' : 'PASV';
    out.push(this.log(LOG_INFO, `data mode passive: client ${verb} becomes ${serverVerb}`, 'forced-passive', { command: verb, clientPort }));
    this.fifo.push({
      kind: 'server',
      verb: serverVerb,
      forced: { mode: 'connect', client: verb, clientPort },
      fallback: serverVerb === 'EPSV' && this.addr.serverFamily === 4,
    });
    this.clientHold = true;
    out.push({ type: 'toServer', data: Buffer.from(`${serverVerb}\r\n`) });
  }

  private finishJoinConnect(n: Extract<JoinRequest, { kind: 'join-connect' }>, result: NegotiationResult, out: Action[]): void {
    if (!result.ok) {
      out.push(this.log(LOG_ERR, `data connection for ${n.command} failed: ${vis(result.error)}`, 'join-failed', { command: n.command }));
      this.replaceReply(`425 Can't open data connection: ${result.error.replace(/[\r\n]/g, ' ').slice(0, 120)}\r\n`, out);
      return;
    }
    out.push(
      this.log(LOG_INFO, `data mode passive: proxy joins client port ${n.clientPort} and server port ${n.serverPort}`, 'joined', {
        command: n.command,
        clientPort: n.clientPort,
        serverPort: n.serverPort,
      }),
    );
    this.replaceReply(`200 ${n.command} command successful\r\n`, out);
  }

  /**
   * PASV and PORT carry only IPv4 addresses; kernel NAT cannot join an IPv4 and an IPv6 peer. Answers the
   * command locally and returns true when it cannot work in this session.
   */
  private refuseFamily(verb: 'PASV' | 'EPSV' | 'PORT' | 'EPRT', out: Action[]): boolean {
    if (this.addr.clientFamily !== this.addr.serverFamily) {
      this.localReply(`425 ${verb} refused: data connections between IPv4 and IPv6 are not possible\r\n`, out);
      return true;
    }
    if ((verb === 'PASV' || verb === 'PORT') && this.addr.clientFamily === 6) {
      // OpenBSD's text exactly, which it logs without a session id.
      out.push({ type: 'log', level: LOG_CRIT, message: 'PASV and PORT not allowed with IPv6', event: 'ipv6-refused', fields: { command: verb } });
      this.localReply(`502 ${verb} not allowed with IPv6, use ${verb === 'PASV' ? 'EPSV' : 'EPRT'}\r\n`, out);
      return true;
    }
    return false;
  }

  private activeCommand(verb: 'PORT' | 'EPRT', arg: string, line: Buffer, out: Action[]): void {
    if (this.refuseFamily(verb, out)) return;
    if (this.tls.client === 'passthrough') {
      // Under TLS the proxy could not read it, so active mode cannot work blind: refused from the start.
      out.push(this.log(LOG_INFO, `${verb} refused: active mode cannot pass through TLS (tls_client passthrough)`, 'passthrough-active', { command: verb }));
      this.localReply(`502 ${verb} refused: active mode cannot pass through TLS unread (tls_client passthrough), use PASV or EPSV\r\n`, out);
      return;
    }
    const parsed = verb === 'PORT' ? parsePortArg(arg) : parseEprtArg(arg);
    if (!parsed.ok) {
      out.push(this.log(LOG_CRIT, `bad port in '${vis(line)}'`, 'bad-port', { command: verb }));
      // The reason is one of the parser's fixed texts, never the client's bytes.
      this.localReply(`501 Syntax error in ${verb} argument (${parsed.reason})\r\n`, out);
      return;
    }
    if (parsed.value.port < MIN_DATA_PORT) {
      out.push(this.log(LOG_CRIT, `bad port in '${vis(line)}'`, 'bad-port', { command: verb, port: parsed.value.port }));
      this.localReply(`500 Illegal ${verb} command: ports below ${MIN_DATA_PORT} are refused\r\n`, out);
      return;
    }
    if (this.policy.dataMode === 'passive') {
      this.forcePassive(verb, parsed.value.port, out);
      return;
    }
    const tls = this.dataTls;
    if (tls) {
      const join: JoinRequest = { kind: 'relay-active', command: verb, clientPort: parsed.value.port, tls };
      this.clientInflight = { id: this.nextId++, negotiation: join };
      out.push({ type: 'join', id: this.clientInflight.id, join });
      return;
    }
    const negotiation: Negotiation = { kind: 'active', command: verb, clientPort: parsed.value.port };
    this.clientInflight = { id: this.nextId++, negotiation };
    out.push({ type: 'negotiate', id: this.clientInflight.id, negotiation });
  }

  private finishActive(n: Extract<Negotiation, { kind: 'active' }>, result: NegotiationResult, out: Action[], via = ''): void {
    if (!result.ok) {
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${vis(result.error)}`, 'firewall-failed', { command: n.command }));
      this.localReply(`425 Can't open data connection: the firewall refused the ${n.command} pinhole\r\n`, out);
      return;
    }
    const named = this.addr.advertiseToServer ?? this.addr.proxy;
    const line = n.command === 'PORT' ? formatPort(named, result.proxyPort) : formatEprt(this.addr.serverFamily, named, result.proxyPort);
    if (this.opts.info !== false) {
      out.push(
        this.log(LOG_INFO, `active: server to client port ${n.clientPort} via port ${result.proxyPort}${via ? ` (${via})` : ''}`, 'active', {
          command: n.command,
          clientPort: n.clientPort,
          proxyPort: result.proxyPort,
        }),
      );
    }
    if (this.opts.debug) out.push(this.log(LOG_DEBUG, `proxy: ${vis(line)}`, 'proxy-line'));
    this.toServer(Buffer.from(line), n.command, out);
  }

  private toServer(line: Buffer, verb: string, out: Action[]): void {
    this.fifo.push({ kind: 'server', verb });
    out.push({ type: 'toServer', data: line });
  }

  /** A reply the proxy makes itself; it reaches the client after the replies still owed before it. */
  private localReply(text: string, out: Action[]): void {
    if (this.opts.debug) out.push(this.log(LOG_DEBUG, `proxy: ${vis(text)}`, 'proxy-line'));
    this.fifo.push({ kind: 'local', data: Buffer.from(text) });
    this.flushLocal(out);
  }

  private flushLocal(out: Action[]): void {
    if (this.replyCode !== null || this.held !== null || this.serverInflight || this.tlsInflight) return;
    while (this.fifo[0]?.kind === 'local') {
      const head = this.fifo.shift() as Extract<Pending, { kind: 'local' }>;
      if (head.then?.op === 'start' && this.clientQueue.length) {
        // Lines read before the 234 was sent would run as if they came under TLS (STARTTLS injection).
        this.closed = true;
        out.push(this.log(LOG_NOTICE, `${this.clientQueue.length} command(s) sent after AUTH before the TLS handshake: refused`, 'tls-injection'));
        out.push({ type: 'toClient', data: Buffer.from('421 Commands after AUTH before the TLS handshake, closing control connection.\r\n') });
        out.push({ type: 'close', reason: 'commands pipelined after AUTH' });
        return;
      }
      out.push({ type: 'toClient', data: head.data });
      if (head.then) {
        // Nothing may follow on this leg until the TLS change is done: the rest of the queue waits.
        this.startTls(head.then.leg, head.then.op, out);
        return;
      }
    }
  }

  private drainClient(out: Action[]): void {
    while (!this.clientBlocked && !this.closed) {
      const line = this.clientQueue.shift();
      if (!line) break;
      this.processClientLine(line, out);
    }
  }

  // ---- server -> client ----

  private processServerLine(line: Buffer, out: Action[]): void {
    if (this.opts.debug) out.push(this.log(LOG_DEBUG, `server: ${vis(line)}`, 'server-line'));
    if (this.replyCode !== null) {
      const code = this.replyCode;
      const text = line.toString('latin1');
      const end = isReplyEnd(text, code);
      this.replyLine(line, text, end, out);
      if (end) this.finishReply(code, out);
      return;
    }
    // "ddd" or "ddd-" at the start, read from the bytes (no regex, no string of the whole line).
    if (!(isDigit(line[0]) && isDigit(line[1]) && isDigit(line[2]))) {
      // Not a reply line (RFC 959 allows none here); pass it on untouched, like OpenBSD.
      out.push({ type: 'toClient', data: line });
      return;
    }
    const code = line.toString('latin1', 0, 3);
    const multi = line[3] === 0x2d;
    if (code === '230') this.login = true;
    this.startReply(code, multi, line, out);
    if (this.closed) return;
    if (multi) this.replyCode = code;
    else this.finishReply(code, out);
  }

  /** The first line of a reply: decide how its lines are handled. */
  private startReply(code: string, multi: boolean, line: Buffer, out: Action[]): void {
    const head = this.headServer();
    const verb = head?.verb ?? '';
    const forced = head?.forced;
    if (head?.internal || (head?.auth && code === '234')) {
      // The proxy acts on it (TLS on the server leg, or the pass-through pinhole first).
      this.replyMode = { how: 'swallow' };
      this.held = head.auth === 'passthrough' ? [line] : null;
      this.heldOverflow = false;
      return;
    }
    const negotiationReply = (verb === 'PASV' && code === '227') || (verb === 'EPSV' && code === '229');
    if (forced && (negotiationReply || (forced.mode === 'listen' && code.startsWith('2')) || (head?.fallback && code.startsWith('5')))) {
      // The proxy's own translation: the reply is not the client's to see as it is.
      this.replyMode = { how: 'hold' };
      this.held = [];
      this.heldOverflow = false;
      this.hold(line);
      return;
    }
    const verdict = gateReply(this.policy, verb, code);
    if (verdict.log) out.push(this.log(verdict.log.level, verdict.log.message, verdict.log.event, verdict.log.fields));
    if (verdict.action === 'abort') {
      this.closed = true;
      out.push({ type: 'toClient', data: Buffer.from(verdict.reply) });
      out.push({ type: 'close', reason: verdict.close });
      return;
    }
    if (verdict.action === 'change') {
      this.replyMode = { how: 'change', text: verdict.text };
      if (forced?.mode === 'listen') out.push({ type: 'joinCancel' });
      return;
    }
    if (!forced && negotiationReply) {
      this.replyMode = { how: 'hold' };
      this.held = [];
      this.heldOverflow = false;
      this.hold(line);
      return;
    }
    if (forced?.mode === 'listen') out.push({ type: 'joinCancel' }); // the server refused our PORT/EPRT
    if (verb === 'FEAT' && code === '211') {
      const feat = new FeatRewriter(this.policy, this.tls.client === 'passthrough' ? 'server' : this.tls.client === 'none' ? 'none' : 'proxy');
      this.replyMode = { how: 'feat', feat };
      const rewritten = multi ? null : feat.oneLine(line);
      if (rewritten) {
        out.push({ type: 'toClient', data: rewritten });
        return;
      }
    } else {
      this.replyMode = { how: 'relay' };
    }
    out.push({ type: 'toClient', data: line });
  }

  /** A further line of a multi-line reply. */
  private replyLine(line: Buffer, text: string, end: boolean, out: Action[]): void {
    const mode = this.replyMode;
    switch (mode.how) {
      case 'hold':
        this.hold(line);
        return;
      case 'swallow':
        if (this.held) this.hold(line);
        return;
      case 'change':
        return;
      case 'feat': {
        const lines = mode.feat.line(line, text, end);
        if (!lines.length && this.opts.debug) out.push(this.log(LOG_DEBUG, `FEAT: dropped ${vis(line)}`, 'feat-drop'));
        for (const l of lines) out.push({ type: 'toClient', data: l });
        return;
      }
      case 'relay':
        out.push({ type: 'toClient', data: line });
        return;
    }
  }

  private hold(line: Buffer): void {
    if (!this.held) return;
    if (this.held.length >= MAX_REPLY_LINES) this.heldOverflow = true;
    else this.held.push(line);
  }

  private headServer(): ServerPending | undefined {
    const first = this.fifo[0];
    if (first?.kind === 'server') return first; // the usual case, without a search
    return this.fifo.find((p): p is ServerPending => p.kind === 'server');
  }

  private finishReply(code: string, out: Action[]): void {
    this.replyCode = null;
    const mode = this.replyMode;
    this.replyMode = { how: 'relay' };
    if (mode.how === 'swallow') {
      this.tlsReply(code, out);
      // The set-up may be over (PROT's reply): the client's lines read meanwhile go on, in order.
      this.flushLocal(out);
      this.drainClient(out);
      return;
    }
    if (mode.how === 'hold' && this.held) {
      const lines = this.held;
      const overflow = this.heldOverflow;
      this.held = null;
      this.heldReply(code, lines, overflow, out);
      this.drainClient(out);
      return;
    }
    if (mode.how === 'change') out.push({ type: 'toClient', data: Buffer.from(mode.text, 'latin1') });
    // A preliminary reply leaves its command waiting for the final one (a transfer runs meanwhile), but
    // a local reply queued behind a reply that has now ended may go.
    if (code.startsWith('1')) this.inTransfer = true;
    else {
      this.inTransfer = false;
      const p = this.popServer();
      if (p?.auth) this.tlsHold = false; // the server refused the client's AUTH: the client has its reply
      if (p?.prot && code.startsWith('2')) this.clientProt = this.serverProt = p.prot;
      if (p?.verb === '' && code === '220' && this.serverSetup) this.internal(this.serverSetup, this.serverSetup === 'auth' ? 'AUTH TLS' : 'PBSZ 0', out);
    }
    this.flushLocal(out);
    this.drainClient(out);
  }

  /** The end of a swallowed reply: one of the proxy's own commands, or a 234 to the client's AUTH. */
  private tlsReply(code: string, out: Action[]): void {
    const head = this.headServer()!;
    if (head.internal) {
      this.popServer();
      this.internalReply(head.internal, code, out);
    } else if (head.auth === 'terminate') {
      this.startTls('server', 'start', out, 'client-auth');
    } else {
      const range = this.tls.passthroughPorts!;
      const negotiation: Negotiation = { kind: 'passthrough', low: range.low, high: range.high };
      this.serverInflight = { id: this.nextId++, negotiation };
      out.push({ type: 'negotiate', id: this.serverInflight.id, negotiation });
    }
  }

  /** Remove the server command at the head; a forced one releases the client's lines. */
  private popServer(): ServerPending | undefined {
    const i = this.fifo[0]?.kind === 'server' ? 0 : this.fifo.findIndex((p) => p.kind === 'server');
    if (i < 0) return undefined;
    // shift() for the head: no array made for the removed element, as splice() would.
    const p = (i === 0 ? this.fifo.shift() : this.fifo.splice(i, 1)[0]) as ServerPending;
    if (p.forced) this.clientHold = false;
    return p;
  }

  /** A held reply is complete: rewrite it, make a negotiation or a join of it, or fall back. */
  private heldReply(code: string, lines: Buffer[], overflow: boolean, out: Action[]): void {
    const head = this.headServer();
    const forced = head?.forced;
    if (head?.fallback && code.startsWith('5')) {
      // data_mode passive and a server without EPSV: ask PASV; the client never sees the refusal.
      head.verb = 'PASV';
      head.fallback = false;
      out.push(this.log(LOG_INFO, `server refused EPSV (${code}), trying PASV`, 'epsv-fallback', { code }));
      out.push({ type: 'toServer', data: Buffer.from('PASV\r\n') });
      return;
    }
    if (forced?.mode === 'listen') {
      const reply = forced.client === 'PASV' ? format227(this.advertiseToClient, forced.clientPort) : format229(forced.clientPort);
      this.replaceReply(reply, out);
      return;
    }
    const text = (lines.length === 1 ? lines[0]! : Buffer.concat(lines)).toString('latin1');
    const serverForm = code === '227' ? 'PASV' : 'EPSV';
    let port: number | null = null;
    if (!overflow) {
      if (serverForm === 'PASV') {
        const p = parse227(text);
        if (p.ok) port = p.value.port;
      } else {
        const p = parse229(text);
        if (p.ok) port = p.value;
      }
    }
    const clientCommand = forced?.client ?? serverForm;
    if (port === null || port < MIN_DATA_PORT) {
      out.push(this.log(LOG_CRIT, `bad port in '${vis(text)}'`, 'bad-port', { command: serverForm }));
      this.replaceReply(`425 Can't open data connection: the server's ${serverForm} reply was refused by the proxy\r\n`, out);
      return;
    }
    const tls = this.dataTls;
    if (forced?.mode === 'connect') {
      const join: JoinRequest = { kind: 'join-connect', command: forced.client, clientPort: forced.clientPort, serverPort: port, ...(tls ? { tls } : {}) };
      this.serverInflight = { id: this.nextId++, negotiation: join };
      out.push({ type: 'join', id: this.serverInflight.id, join });
      return;
    }
    if (tls) {
      const join: JoinRequest = { kind: 'relay-passive', command: clientCommand as 'PASV' | 'EPSV', serverPort: port, tls };
      this.serverInflight = { id: this.nextId++, negotiation: join };
      out.push({ type: 'join', id: this.serverInflight.id, join });
      return;
    }
    const negotiation: Negotiation = { kind: 'passive', command: clientCommand as 'PASV' | 'EPSV', serverPort: port };
    this.serverInflight = { id: this.nextId++, negotiation };
    out.push({ type: 'negotiate', id: this.serverInflight.id, negotiation });
  }

  /** The address passive replies name: masquerade_client, else the one the client dialled. */
  private get advertiseToClient(): string {
    return this.addr.advertiseToClient ?? this.addr.originalServer;
  }

  private finishPassive(n: Extract<Negotiation, { kind: 'passive' }>, result: NegotiationResult, out: Action[], via = ''): void {
    if (!result.ok) {
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${vis(result.error)}`, 'firewall-failed', { command: n.command }));
      this.replaceReply(`425 Can't open data connection: the firewall refused the ${n.command} pinhole\r\n`, out);
      return;
    }
    const line = n.command === 'PASV' ? format227(this.advertiseToClient, result.proxyPort) : format229(result.proxyPort);
    if (this.opts.info !== false) {
      out.push(
        this.log(LOG_INFO, `passive: client to server port ${n.serverPort} via port ${result.proxyPort}${via ? ` (${via})` : ''}`, 'passive', {
          command: n.command,
          serverPort: n.serverPort,
          proxyPort: result.proxyPort,
        }),
      );
    }
    this.replaceReply(line, out);
  }

  /** Send `text` in place of the held server reply and complete its command. */
  private replaceReply(text: string, out: Action[]): void {
    if (this.opts.debug) out.push(this.log(LOG_DEBUG, `proxy: ${vis(text)}`, 'proxy-line'));
    out.push({ type: 'toClient', data: Buffer.from(text) });
    this.popServer();
    this.flushLocal(out);
  }

  private drainServer(out: Action[]): void {
    while (!this.serverInflight && !this.closed) {
      const line = this.serverQueue.shift();
      if (!line) break;
      this.processServerLine(line, out);
    }
  }

  private log(level: Level, message: string, event: string, fields?: LogFields): Action {
    const a: Action = { type: 'log', level, message: `#${this.id} ${message}`, event };
    if (fields) a.fields = fields;
    return a;
  }
}

/** An error's text on one line of a reply, bounded. */
const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 160);

const isDigit = (b: number | undefined): boolean => b !== undefined && b >= 0x30 && b <= 0x39;

/** The end line of a multi-line reply repeats the code followed by a space (or ends right there). */
function isReplyEnd(text: string, code: string): boolean {
  return text.startsWith(code) && (text.length === 3 || text[3] === ' ' || text[3] === '\r' || text[3] === '\n');
}
