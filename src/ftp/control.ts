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
import type { Family } from '../net/address.js';
import { type Level, LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO } from '../levels.js';
import { format227, format229, formatEprt, formatPort, parse227, parse229, parseEprtArg, parsePortArg } from './port-args.js';
import { vis } from './vis.js';

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
}

export interface ControlOptions {
  /** -A: only USER ftp / USER anonymous are forwarded. */
  anonymousOnly: boolean;
  /** Emit DEBUG log actions for every line (skipped when -D is below 7: they cost a string each). */
  debug: boolean;
  /** The firewall's name in error messages ("pf", "nftables", "iptables"). */
  firewallName: string;
}

export type Negotiation =
  | { kind: 'passive'; command: 'PASV' | 'EPSV'; serverPort: number }
  | { kind: 'active'; command: 'PORT' | 'EPRT'; clientPort: number };

export type LogFields = Record<string, string | number>;

export type NegotiationResult = { ok: true; proxyPort: number } | { ok: false; error: string };

export type Action =
  | { type: 'toServer'; data: Buffer }
  | { type: 'toClient'; data: Buffer }
  /** Install the pinhole for this negotiation, then call negotiationDone(id, result). */
  | { type: 'negotiate'; id: number; negotiation: Negotiation }
  /** `event` and `fields` are for --log-format json; the text format prints only the message. */
  | { type: 'log'; level: Level; message: string; event: string; fields?: LogFields }
  /** End the session (after flushing what was sent). */
  | { type: 'close'; reason: string };

type Pending =
  | { kind: 'server'; verb: string }
  | { kind: 'local'; data: Buffer };

interface Inflight {
  id: number;
  negotiation: Negotiation;
}

export class FtpControl {
  /** Commands sent to the server (or answered locally) whose final reply the client has not had yet. */
  private readonly fifo: Pending[] = [{ kind: 'server', verb: '' }]; // '' = the greeting
  private readonly clientQueue: Buffer[] = [];
  private readonly serverQueue: Buffer[] = [];
  private clientInflight: Inflight | null = null;
  private serverInflight: Inflight | null = null;
  /** Code of the multi-line reply being relayed, if any. */
  private replyCode: string | null = null;
  /** Lines of a 227/229 reply held back for rewriting. */
  private held: Buffer[] | null = null;
  private heldOverflow = false;
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly id: number,
    private readonly addr: SessionAddresses,
    private readonly opts: ControlOptions,
  ) {}

  /** True while a line waits on the firewall; the session stops reading that side meanwhile. */
  get clientBlocked(): boolean {
    return this.clientInflight !== null;
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
    if (this.clientInflight) {
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
      if (negotiation.kind !== 'active') throw new Error('client-side negotiation must be active');
      this.finishActive(negotiation, result, out);
      this.drainClient(out);
    } else if (this.serverInflight?.id === id) {
      const { negotiation } = this.serverInflight;
      this.serverInflight = null;
      if (negotiation.kind !== 'passive') throw new Error('server-side negotiation must be passive');
      this.finishPassive(negotiation, result, out);
      this.drainServer(out);
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
    const { verb, arg } = splitCommand(line);
    switch (verb) {
      case 'USER':
        if (this.opts.anonymousOnly && !/^(ftp|anonymous)$/i.test(arg)) {
          this.localReply('500 Only anonymous FTP allowed\r\n', out);
          return;
        }
        break;
      case 'AUTH':
        // The proxy must read PORT/PASV on the control channel; an encrypted one would silently break
        // every data connection. A clear refusal makes clients fall back to plain FTP (RFC 4217 sec. 6).
        this.localReply('504 AUTH not supported through ftp-proxy, use plain FTP\r\n', out);
        return;
      case 'PASV':
      case 'EPSV':
        if (this.refuseFamily(verb, out)) return;
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
    const negotiation: Negotiation = { kind: 'active', command: verb, clientPort: parsed.value.port };
    this.clientInflight = { id: this.nextId++, negotiation };
    out.push({ type: 'negotiate', id: this.clientInflight.id, negotiation });
  }

  private finishActive(n: Extract<Negotiation, { kind: 'active' }>, result: NegotiationResult, out: Action[]): void {
    if (!result.ok) {
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${result.error}`, 'firewall-failed', { command: n.command }));
      this.localReply(`425 Can't open data connection: the firewall refused the ${n.command} pinhole\r\n`, out);
      return;
    }
    const line =
      n.command === 'PORT'
        ? formatPort(this.addr.proxy, result.proxyPort)
        : formatEprt(this.addr.serverFamily, this.addr.proxy, result.proxyPort);
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
    while (!this.clientInflight && !this.closed) {
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
      if (this.held) this.hold(line);
      else out.push({ type: 'toClient', data: line });
      if (isReplyEnd(text, code)) this.finishReply(code, out);
      return;
    }
    const m = /^(\d{3})(-?)/.exec(text);
    if (!m) {
      // Not a reply line (RFC 959 allows none here); pass it on untouched, like OpenBSD.
      out.push({ type: 'toClient', data: line });
      return;
    }
    const code = m[1]!;
    const head = this.headServer();
    if ((head?.verb === 'PASV' && code === '227') || (head?.verb === 'EPSV' && code === '229')) {
      this.held = [];
      this.heldOverflow = false;
      this.hold(line);
    } else {
      out.push({ type: 'toClient', data: line });
    }
    if (m[2] === '-') this.replyCode = code;
    else this.finishReply(code, out);
  }

  private hold(line: Buffer): void {
    if (!this.held) return;
    if (this.held.length >= MAX_REPLY_LINES) this.heldOverflow = true;
    else this.held.push(line);
  }

  private headServer(): { kind: 'server'; verb: string } | undefined {
    const head = this.fifo.find((p) => p.kind === 'server');
    return head as { kind: 'server'; verb: string } | undefined;
  }

  private finishReply(code: string, out: Action[]): void {
    this.replyCode = null;
    if (this.held) {
      const lines = this.held;
      const overflow = this.heldOverflow;
      this.held = null;
      this.passiveReply(code === '227' ? 'PASV' : 'EPSV', lines, overflow, out);
      return;
    }
    // A preliminary reply leaves its command waiting for the final one, but a local reply queued behind
    // a reply that has now ended may go.
    if (!code.startsWith('1')) this.popServer();
    this.flushLocal(out);
  }

  private popServer(): void {
    const i = this.fifo.findIndex((p) => p.kind === 'server');
    if (i >= 0) this.fifo.splice(i, 1);
  }

  private passiveReply(command: 'PASV' | 'EPSV', lines: Buffer[], overflow: boolean, out: Action[]): void {
    const text = Buffer.concat(lines).toString('latin1');
    let port: number | null = null;
    if (!overflow) {
      if (command === 'PASV') {
        const p = parse227(text);
        if (p.ok) port = p.value.port;
      } else {
        const p = parse229(text);
        if (p.ok) port = p.value;
      }
    }
    if (port === null || port < MIN_DATA_PORT) {
      out.push(this.log(LOG_CRIT, `bad port in '${vis(text)}'`, 'bad-port', { command }));
      this.replaceReply(`425 Can't open data connection: the server's ${command} reply was refused by the proxy\r\n`, out);
      return;
    }
    const negotiation: Negotiation = { kind: 'passive', command, serverPort: port };
    this.serverInflight = { id: this.nextId++, negotiation };
    out.push({ type: 'negotiate', id: this.serverInflight.id, negotiation });
  }

  private finishPassive(n: Extract<Negotiation, { kind: 'passive' }>, result: NegotiationResult, out: Action[]): void {
    if (!result.ok) {
      out.push(this.log(LOG_CRIT, `${this.opts.firewallName} operation failed: ${result.error}`, 'firewall-failed', { command: n.command }));
      this.replaceReply(`425 Can't open data connection: the firewall refused the ${n.command} pinhole\r\n`, out);
      return;
    }
    const line = n.command === 'PASV' ? format227(this.addr.originalServer, result.proxyPort) : format229(result.proxyPort);
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

/**
 * The command verb (upper-cased) and its argument. Leading Telnet commands (IAC IP etc., sent before
 * ABOR) and stray IAC bytes are skipped, as servers do.
 */
export function splitCommand(line: Buffer): { verb: string; arg: string } {
  let i = 0;
  while (i < line.length && line[i] === 0xff) {
    const cmd = line[i + 1];
    if (cmd === undefined || cmd < 240) i += 1;
    else if (cmd >= 251 && cmd <= 254) i += 3;
    else i += 2;
  }
  const text = line.subarray(i).toString('latin1').replace(/\r?\n$/, '');
  // RFC 959 separates with a space; some servers take a tab too, so a tab must not hide a USER from -A.
  const sp = text.search(/[ \t]/);
  const verb = (sp === -1 ? text : text.slice(0, sp)).replace(/\r$/, '').toUpperCase();
  const arg = sp === -1 ? '' : text.slice(sp + 1).replace(/\r$/, '');
  return { verb, arg };
}
