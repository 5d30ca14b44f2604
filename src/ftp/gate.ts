// The command gate: whether a client's command line may go on towards the server, before the state
// machine looks at what it means. Telnet bytes and inner CRs (telnet.ts), the policy's length limits and
// command rules (src/policy/), -A, and the commands the proxy answers itself (AUTH, LPRT, LPSV). Pure.
import { type Level, LOG_INFO, LOG_NOTICE } from '../levels.js';
import { decideCommand } from '../policy/commands.js';
import type { Policy } from '../policy/parse.js';
import { leadingTelnet, telnetProblem } from './telnet.js';
import { vis } from './vis.js';

export interface GateLog {
  level: Level;
  message: string;
  event: string;
  fields?: Record<string, string | number>;
}

export type GateVerdict =
  /** The line goes on; its verb (upper case) and argument. */
  | { pass: true; verb: string; arg: string }
  /** Answer `reply` in the line's place (after the replies owed before it); `close`: then end the session. */
  | { pass: false; reply: string; log?: GateLog; close?: string };

/** Bytes of a line without its line ending. */
export function contentLength(line: Buffer): number {
  let n = line.length;
  if (n && line[n - 1] === 0x0a) n--;
  if (n && line[n - 1] === 0x0d) n--;
  return n;
}

export function gateCommand(line: Buffer, policy: Policy, anonymousOnly: boolean): GateVerdict {
  const telnet = telnetProblem(line);
  if (telnet) {
    // The server would read another line than the one the policy and -A judge: refused, never sent.
    return {
      pass: false,
      reply: '500 Command line refused: Telnet bytes or a CR inside it, not sent to the server\r\n',
      log: { level: LOG_NOTICE, message: `command line refused: ${telnet}: '${vis(line, 80)}'`, event: 'telnet-refused', fields: { why: telnet } },
    };
  }
  const limits = policy.limits;
  if (limits.line !== undefined && contentLength(line) > limits.line) {
    return {
      pass: false,
      reply: `500 Command line too long (more than ${limits.line} bytes), not sent to the server\r\n`,
      log: { level: LOG_NOTICE, message: `command line too long (${contentLength(line)} bytes, max_line_length ${limits.line})`, event: 'policy-length', fields: { what: 'line' } },
    };
  }
  const { verb, arg } = splitCommand(line);
  const decision = decideCommand(policy, verb, arg);
  if (decision.action !== 'accept') {
    // The verb only, never the argument: it may be a password.
    const shown = vis(Buffer.from(verb.slice(0, 16), 'latin1'));
    if (decision.action === 'reject') {
      return {
        pass: false,
        reply: decision.reply,
        log: { level: LOG_INFO, message: `command ${shown || '(empty)'} refused by policy (${decision.why})`, event: 'policy-reject', fields: { command: shown, rule: decision.why } },
      };
    }
    return {
      pass: false,
      reply: decision.reply,
      log: { level: LOG_NOTICE, message: `command ${shown || '(empty)'} refused by policy, ending session (${decision.why})`, event: 'policy-drop', fields: { command: shown, rule: decision.why } },
      close: `command ${shown} dropped by policy`,
    };
  }
  switch (verb) {
    case 'USER':
      if (limits.username !== undefined && arg.length > limits.username) {
        return {
          pass: false,
          reply: `501 User name too long (more than ${limits.username} characters)\r\n`,
          log: { level: LOG_NOTICE, message: `user name too long (${arg.length} bytes, max_username_length ${limits.username})`, event: 'policy-length', fields: { what: 'username' } },
        };
      }
      if (anonymousOnly && !/^(ftp|anonymous)$/i.test(arg)) return { pass: false, reply: '500 Only anonymous FTP allowed\r\n' };
      break;
    case 'PASS':
      if (limits.password !== undefined && arg.length > limits.password) {
        return {
          pass: false,
          reply: `501 Password too long (more than ${limits.password} characters)\r\n`,
          log: { level: LOG_NOTICE, message: `password too long (max_password_length ${limits.password})`, event: 'policy-length', fields: { what: 'password' } },
        };
      }
      break;
    case 'AUTH':
      // With tls_client none the proxy must read PORT/PASV in the clear; an encrypted control channel
      // would silently break every data connection. A clear refusal makes clients fall back to plain
      // FTP (RFC 4217 sec. 6). The other modes are the state machine's (tls-commands.ts).
      if (policy.tls.client !== 'none') break;
      return { pass: false, reply: '504 AUTH not supported through ftp-proxy, use plain FTP\r\n' };
    case 'LPRT':
    case 'LPSV':
      // RFC 1639's long forms: the proxy does not rewrite them, so relayed they would name the client's
      // address to the server (a bounce past -A and the pinholes) or an internal one in a 228 reply.
      return {
        pass: false,
        reply: `502 ${verb} not supported through ftp-proxy, use ${verb === 'LPSV' ? 'EPSV or PASV' : 'EPRT or PORT'}\r\n`,
        log: { level: LOG_NOTICE, message: `${verb} refused: use PASV/EPSV or PORT/EPRT`, event: 'long-refused', fields: { command: verb } },
      };
  }
  return { pass: true, verb, arg };
}

/**
 * The command verb (upper-cased) and its argument. Leading Telnet commands (IAC IP etc., sent before
 * ABOR) are skipped, as servers do; a line with any other Telnet byte never gets this far (telnet.ts).
 */
export function splitCommand(line: Buffer): { verb: string; arg: string } {
  // The line ending goes ("\r\n" or "\n"), read from the bytes: one string is made, of the rest.
  let end = line.length;
  if (end && line[end - 1] === 0x0a) {
    end--;
    if (end && line[end - 1] === 0x0d) end--;
  }
  const text = line.toString('latin1', leadingTelnet(line), end);
  // RFC 959 separates with a space; some servers take a tab too, so a tab must not hide a USER from -A.
  const sp = firstBlank(text);
  const verb = dropCr(sp === -1 ? text : text.slice(0, sp)).toUpperCase();
  const arg = sp === -1 ? '' : dropCr(text.slice(sp + 1));
  return { verb, arg };
}

/** Index of the first space or tab, -1 if none. */
function firstBlank(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09) return i;
  }
  return -1;
}

/** One trailing CR off (a line that ended in CR CR LF, or had no LF). */
const dropCr = (s: string): string => (s.endsWith('\r') ? s.slice(0, -1) : s);
