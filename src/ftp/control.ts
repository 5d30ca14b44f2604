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
import { type Level, LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO } from '../levels.js';
import { format227, format229, formatEprt, formatPort, parse227, parse229, parseEprtArg, parsePortArg } from './port-args.js';
import { gateCommand } from './gate.js';
import { FeatRewriter, gateReply } from './reply-gate.js';
import { vis } from './vis.js';
import { defaultPolicy, type Policy } from '../policy/parse.js';

export { splitCommand } from './gate.js';

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
  /** The firewall's name in error messages ("pf", "nftables", "iptables"). */
  firewallName: string;
  /** The session's policy (-f); OpenBSD's behaviour without one. */
  policy?: Policy;
}

export type Negotiation =
  | { kind: 'passive'; command: 'PASV' | 'EPSV'; serverPort: number }
  | { kind: 'active'; command: 'PORT' | 'EPRT'; clientPort: number };

export type LogFields = Record<string, string | number>;

/**
 * A data connection the session joins itself, for data_mode passive/active when the client asked for the
 * other mode: connect to the client's PORT and to the server's passive port, or listen for both.
 */
export type JoinRequest =
  | { kind: 'join-connect'; command: 'PORT' | 'EPRT'; clientPort: number; serverPort: number }
  | { kind: 'join-listen'; command: 'PASV' | 'EPSV' };

/** For join-listen: proxyPort is the port the server is told, clientPort the one the client is told. */
export type NegotiationResult = { ok: true; proxyPort: number; clientPort?: number } | { ok: false; error: string };

export type Action =
  | { type: 'toServer'; data: Buffer }
  | { type: 'toClient'; data: Buffer }
  /** Install the pinhole for this negotiation, then call negotiationDone(id, result). */
  | { type: 'negotiate'; id: number; negotiation: Negotiation }
  /** Set up a data connection the proxy joins itself, then call negotiationDone(id, result). */
  | { type: 'join'; id: number; join: JoinRequest }
  /** The server refused the command a join was for: close its listeners. */
  | { type: 'joinCancel' }
  /** `event` and `fields` are for --log-format json; the text format prints only the message. */
  | { type: 'log'; level: Level; message: string; event: string; fields?: LogFields }
  /** End the session (after flushing what was sent). */
  | { type: 'close'; reason: string };

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
}

type Pending = ServerPending | { kind: 'local'; data: Buffer };

interface Inflight {
  id: number;
  negotiation: Negotiation | JoinRequest;
}

/** How the lines of the reply being read are handled. */
type ReplyMode =
  | { how: 'relay' }
  /** Held back: a 227/229 to rewrite, a 2xx to a forced PORT, a 5xx to EPSV before the PASV fallback. */
  | { how: 'hold' }
  /** Reply policy `change`: swallowed, the new line goes out at the end. */
  | { how: 'change'; text: string }
  /** A FEAT reply: feature lines filtered, inserts before the last line. */
  | { how: 'feat'; feat: FeatRewriter };

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

  constructor(
    private readonly id: number,
    private readonly addr: SessionAddresses,
    private readonly opts: ControlOptions,
  ) {
    this.policy = opts.policy ?? defaultPolicy();
  }

  /** True while a line waits on the firewall; the session stops reading that side meanwhile. */
  get clientBlocked(): boolean {
    return this.clientInflight !== null || this.clientHold;
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
    return this.serverInflight !== null;
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
    if (this.serverInflight) {
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
      else throw new Error(`client-side negotiation cannot be ${negotiation.kind}`);
      this.drainClient(out);
    } else if (this.serverInflight?.id === id) {
      const { negotiation } = this.serverInflight;
      this.serverInflight = null;
      if (negotiation.kind === 'passive') this.finishPassive(negotiation, result, out);
      else if (negotiation.kind === 'join-connect') this.finishJoinConnect(negotiation, result, out);
      else throw new Error(`server-side negotiation cannot be ${negotiation.kind}`);
      this.drainServer(out);
      this.drainClient(out);
    }
    return out;
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
    const join: JoinRequest = { kind: 'join-listen', command: verb };
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
    const negotiation: Negotiation = { kind: 'active', command: verb, clientPort: parsed.value.port };
    this.clientInflight = { id: this.nextId++, negotiation };
    out.push({ type: 'negotiate', id: this.clientInflight.id, negotiation });
  }

  private finishActive(n: Extract<Negotiation, { kind: 'active' }>, result: NegotiationResult, out: Action[]): void {
    if (!result.ok) {
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${vis(result.error)}`, 'firewall-failed', { command: n.command }));
      this.localReply(`425 Can't open data connection: the firewall refused the ${n.command} pinhole\r\n`, out);
      return;
    }
    const named = this.addr.advertiseToServer ?? this.addr.proxy;
    const line = n.command === 'PORT' ? formatPort(named, result.proxyPort) : formatEprt(this.addr.serverFamily, named, result.proxyPort);
    out.push(
      this.log(LOG_INFO, `active: server to client port ${n.clientPort} via port ${result.proxyPort}`, 'active', {
        command: n.command,
        clientPort: n.clientPort,
        proxyPort: result.proxyPort,
      }),
    );
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
    if (this.replyCode !== null || this.held !== null || this.serverInflight) return;
    while (this.fifo[0]?.kind === 'local') {
      const head = this.fifo.shift() as { kind: 'local'; data: Buffer };
      out.push({ type: 'toClient', data: head.data });
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
    const text = line.toString('latin1');
    if (this.replyCode !== null) {
      const code = this.replyCode;
      const end = isReplyEnd(text, code);
      this.replyLine(line, text, end, out);
      if (end) this.finishReply(code, out);
      return;
    }
    const m = /^(\d{3})(-?)/.exec(text);
    if (!m) {
      // Not a reply line (RFC 959 allows none here); pass it on untouched, like OpenBSD.
      out.push({ type: 'toClient', data: line });
      return;
    }
    const code = m[1]!;
    if (code === '230') this.login = true;
    this.startReply(code, m[2] === '-', line, out);
    if (this.closed) return;
    if (m[2] === '-') this.replyCode = code;
    else this.finishReply(code, out);
  }

  /** The first line of a reply: decide how its lines are handled. */
  private startReply(code: string, multi: boolean, line: Buffer, out: Action[]): void {
    const head = this.headServer();
    const verb = head?.verb ?? '';
    const forced = head?.forced;
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
      const feat = new FeatRewriter(this.policy);
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
    return this.fifo.find((p): p is ServerPending => p.kind === 'server');
  }

  private finishReply(code: string, out: Action[]): void {
    this.replyCode = null;
    const mode = this.replyMode;
    this.replyMode = { how: 'relay' };
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
      this.popServer();
    }
    this.flushLocal(out);
    this.drainClient(out);
  }

  /** Remove the server command at the head; a forced one releases the client's lines. */
  private popServer(): void {
    const i = this.fifo.findIndex((p) => p.kind === 'server');
    if (i < 0) return;
    const [p] = this.fifo.splice(i, 1) as [ServerPending];
    if (p.forced) this.clientHold = false;
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
    const text = Buffer.concat(lines).toString('latin1');
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
    if (forced?.mode === 'connect') {
      const join: JoinRequest = { kind: 'join-connect', command: forced.client, clientPort: forced.clientPort, serverPort: port };
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

  private finishPassive(n: Extract<Negotiation, { kind: 'passive' }>, result: NegotiationResult, out: Action[]): void {
    if (!result.ok) {
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${vis(result.error)}`, 'firewall-failed', { command: n.command }));
      this.replaceReply(`425 Can't open data connection: the firewall refused the ${n.command} pinhole\r\n`, out);
      return;
    }
    const line = n.command === 'PASV' ? format227(this.advertiseToClient, result.proxyPort) : format229(result.proxyPort);
    out.push(
      this.log(LOG_INFO, `passive: client to server port ${n.serverPort} via port ${result.proxyPort}`, 'passive', {
        command: n.command,
        serverPort: n.serverPort,
        proxyPort: result.proxyPort,
      }),
    );
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

/** The end line of a multi-line reply repeats the code followed by a space (or ends right there). */
function isReplyEnd(text: string, code: string): boolean {
  return text.startsWith(code) && (text.length === 3 || text[3] === ' ' || text[3] === '\r' || text[3] === '\n');
}
