// The policy file (-f): a line-oriented, human-editable format, checked against a schema that names the
// file, the line and the key of every mistake. Pure: text in, Policy or a list of issues out.
//
//   # a comment, to the end of the line
//   profile minimal
//   command RETR match /^[\w.-]+$/ accept
//   command SITE reject 502 "SITE is not allowed here"
//   reply *530 change 530 "Login incorrect."
//   feat MLST drop
//   max_line_length 255
//
// Tokens are bare words, "double-quoted strings" (\" and \\ escape) and /regular expressions/ with an
// optional i flag. ftp-proxy(8), POLICY FILE, documents every key.
import { isIP } from 'node:net';
import { compilePattern } from './regex.js';
import { checkTls, defaultTls, parseTlsKey, TLS_KEYS, TLS_ONCE, type TlsFileCheck, type TlsKey, type TlsPolicy } from './tls.js';

export type Profile = 'allow-all' | 'minimal';
export type DataMode = 'keep' | 'passive' | 'active';

export type CommandAction =
  | { action: 'accept' }
  | { action: 'reject'; code: string; text: string }
  | { action: 'drop' };

export interface CommandRule {
  /** Upper-case verb, or '*'. */
  verb: string;
  /** Only when the argument matches. */
  match?: RegExp;
  then: CommandAction;
  /** Where it was written, for the log ("policy line 12"). */
  line: number;
}

export type ReplyAction = { action: 'accept' } | { action: 'change'; code: string; text: string } | { action: 'abort' };

export interface ReplyRule {
  then: ReplyAction;
  line: number;
}

export type FeatAction = 'accept' | 'drop' | 'insert';

export interface Limits {
  /** Bytes of a command line, without its line ending. */
  line?: number;
  username?: number;
  password?: number;
}

export interface Policy {
  /** The file it came from; null for the built-in defaults (no -f). */
  file: string | null;
  profile: Profile;
  permitUnknownCommand: boolean;
  permitEmptyCommand: boolean;
  /** In file order: the first rule of a verb whose match (if any) fits decides. */
  commands: CommandRule[];
  /** Keyed "PWD200", "PWD2", "PWD", "*200", "*" (upper case). */
  replies: Map<string, ReplyRule>;
  /** Keyed by the feature in upper case ("MLST", "AUTH TLS", "*"); inserted features keep their case. */
  feat: Map<string, { action: FeatAction; text: string; line: number }>;
  limits: Limits;
  dataMode: DataMode;
  /** Address the client is told in 227 replies instead of the one it dialled, per family. */
  masqueradeClient: { 4?: string; 6?: string };
  /** Address the server is told in PORT/EPRT instead of the proxy's own, per family. */
  masqueradeServer: { 4?: string; 6?: string };
  /** Seconds of silence before TCP keepalive probes start on both control connections. */
  tcpKeepalive: number;
  /** FTPS: the tls_* keys (src/policy/tls.ts). */
  tls: TlsPolicy;
}

/** Zorp FtpProxy's defaults: max_line_length 255, max_username_length 32, max_password_length 64. */
export const ZORP_LIMITS: Required<Limits> = { line: 255, username: 32, password: 64 };

/**
 * The longest command the framing lets through, without its CRLF (MAX_LINE_BYTES 500 in
 * src/ftp/lines.ts, as OpenBSD): the ceiling of every max_*_length key.
 */
export const MAX_COMMAND_BYTES = 498;

export const DEFAULT_KEEPALIVE = 60;

/** No -f: OpenBSD's behaviour (everything relayed, no limits but the 500-byte line, keep the data mode). */
export function defaultPolicy(): Policy {
  return {
    file: null,
    profile: 'allow-all',
    permitUnknownCommand: true,
    permitEmptyCommand: true,
    commands: [],
    replies: new Map(),
    feat: new Map(),
    limits: {},
    dataMode: 'keep',
    masqueradeClient: {},
    masqueradeServer: {},
    tcpKeepalive: DEFAULT_KEEPALIVE,
    tls: defaultTls(),
  };
}

export interface PolicyIssue {
  file: string;
  line: number;
  key: string;
  message: string;
}

export const formatIssue = (i: PolicyIssue): string => `${i.file}:${i.line}: ${i.key}: ${i.message}`;

export class PolicyError extends Error {
  constructor(readonly issues: PolicyIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'PolicyError';
  }
}

type Token = { kind: 'word' | 'string'; text: string } | { kind: 'regex'; text: string; flags: string };

/** Split one line into tokens; a '#' outside a string or a regex starts a comment. */
export function tokenize(line: string): Token[] | { error: string } {
  const out: Token[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
      continue;
    }
    if (c === '#') break;
    if (c === '"') {
      let text = '';
      i++;
      for (;;) {
        if (i >= line.length) return { error: 'unterminated string' };
        const d = line[i]!;
        if (d === '\\' && (line[i + 1] === '"' || line[i + 1] === '\\')) {
          text += line[i + 1];
          i += 2;
        } else if (d === '"') {
          i++;
          break;
        } else {
          text += d;
          i++;
        }
      }
      out.push({ kind: 'string', text });
    } else if (c === '/') {
      let src = '';
      let inClass = false; // as in JavaScript, a / inside [...] does not end the expression
      i++;
      for (;;) {
        if (i >= line.length) return { error: 'unterminated regular expression' };
        const d = line[i]!;
        if (d === '\\' && i + 1 < line.length) {
          src += d + line[i + 1];
          i += 2;
          continue;
        }
        if (d === '/' && !inClass) {
          i++;
          break;
        }
        if (d === '[') inClass = true;
        else if (d === ']') inClass = false;
        src += d;
        i++;
      }
      let flags = '';
      while (i < line.length && /[a-z]/.test(line[i]!)) flags += line[i++];
      out.push({ kind: 'regex', text: src, flags });
    } else {
      let text = '';
      while (i < line.length && !/[ \t\r#"]/.test(line[i]!)) text += line[i++];
      out.push({ kind: 'word', text });
    }
    if (i < line.length && !/[ \t\r#]/.test(line[i]!)) return { error: `no space after ${out.at(-1)!.kind === 'string' ? 'a string' : 'a regular expression'}` };
  }
  return out;
}

const KEYS = [
  'profile',
  'permit_unknown_command',
  'permit_empty_command',
  'command',
  'reply',
  'feat',
  'limits',
  'max_line_length',
  'max_username_length',
  'max_password_length',
  'data_mode',
  'masquerade_client',
  'masquerade_server',
  'tcp_keepalive',
  ...TLS_KEYS,
] as const;
type Key = (typeof KEYS)[number];

/** Keys that may appear once only (the others accumulate rules). */
const ONCE = new Set<Key>([
  'profile',
  'permit_unknown_command',
  'permit_empty_command',
  'limits',
  'max_line_length',
  'max_username_length',
  'max_password_length',
  'data_mode',
  'tcp_keepalive',
  ...TLS_ONCE,
]);

/** A reply text goes on the wire after a code and a space: one line, printable. */
function checkText(text: string): string | null {
  if (/[\r\n\0]/.test(text)) return 'the text must not contain CR, LF or NUL';
  if (text.length > 200) return 'the text is longer than 200 characters';
  return null;
}

const isCode = (s: string): boolean => /^[1-5][0-5]\d$/.test(s);

/** The FEAT entries tls_client decides (src/policy/feat.ts): never a policy's to accept or insert. */
export const TLS_FEATURES = ['AUTH', 'PBSZ', 'PROT'];

/** `tlsFiles` reads the certificate and key files the tls_* keys name (the loader gives it; pure without). */
export function parsePolicy(text: string, file: string, tlsFiles?: TlsFileCheck): Policy | PolicyError {
  const p = defaultPolicy();
  p.file = file;
  const issues: PolicyIssue[] = [];
  const seen = new Map<Key, number>();
  let explicitUnknown = false;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    const tokens = tokenize(lines[n]!);
    if ('error' in tokens) {
      const first = /^\s*([^\s#]+)/.exec(lines[n]!)?.[1] ?? '';
      // An unquoted /path after a tls_* file key reads as a regular expression: say what was meant.
      const hint = first.startsWith('tls_') && /^\s*\S+\s+\//.test(lines[n]!) ? ' (quote file names: "/etc/ftp-proxy/...")' : '';
      issues.push({ file, line: lineNo, key: first, message: tokens.error + hint });
      continue;
    }
    if (!tokens.length) continue;
    const head = tokens[0]!;
    const key = head.text;
    const fail = (message: string): void => {
      issues.push({ file, line: lineNo, key, message });
    };
    if (head.kind !== 'word' || !(KEYS as readonly string[]).includes(key)) {
      fail(`unknown key (expected one of ${KEYS.join(', ')})`);
      continue;
    }
    const k = key as Key;
    if (ONCE.has(k)) {
      const before = seen.get(k);
      if (before !== undefined) {
        fail(`given twice (first on line ${before})`);
        continue;
      }
      seen.set(k, lineNo);
    }
    const args = tokens.slice(1);
    const words = (count: number, what: string): string[] | null => {
      if (args.length !== count || args.some((a) => a.kind === 'regex')) {
        fail(`expected ${what}`);
        return null;
      }
      return args.map((a) => a.text);
    };
    const yesNo = (): boolean | null => {
      const w = words(1, 'yes or no');
      if (!w) return null;
      if (w[0] === 'yes') return true;
      if (w[0] === 'no') return false;
      fail(`expected yes or no, not "${w[0]}"`);
      return null;
    };
    const number = (min: number, max: number): number | null => {
      const w = words(1, `a number from ${min} to ${max}`);
      if (!w) return null;
      if (!/^\d+$/.test(w[0]!) || Number(w[0]) < min || Number(w[0]) > max) {
        fail(`expected a number from ${min} to ${max}, not "${w[0]}"`);
        return null;
      }
      return Number(w[0]);
    };
    switch (k) {
      case 'profile': {
        const w = words(1, 'allow-all or minimal');
        if (!w) break;
        if (w[0] !== 'allow-all' && w[0] !== 'minimal') {
          fail(`expected allow-all or minimal, not "${w[0]}"`);
          break;
        }
        p.profile = w[0];
        break;
      }
      case 'permit_unknown_command': {
        const v = yesNo();
        if (v !== null) {
          p.permitUnknownCommand = v;
          explicitUnknown = true;
        }
        break;
      }
      case 'permit_empty_command': {
        const v = yesNo();
        if (v !== null) p.permitEmptyCommand = v;
        break;
      }
      case 'command': {
        const rule = parseCommandRule(args, lineNo, fail);
        if (rule) p.commands.push(rule);
        break;
      }
      case 'reply': {
        const r = parseReplyRule(args, fail);
        if (!r) break;
        const before = p.replies.get(r.key);
        if (before) {
          fail(`${r.key} is already set on line ${before.line}`);
          break;
        }
        p.replies.set(r.key, { then: r.then, line: lineNo });
        break;
      }
      case 'feat': {
        const w = words(2, 'a feature and accept, drop or insert (quote a feature with a space: "AUTH TLS")');
        if (!w) break;
        const [name, action] = w as [string, string];
        if (action !== 'accept' && action !== 'drop' && action !== 'insert') {
          fail(`expected accept, drop or insert, not "${action}"`);
          break;
        }
        if (!name || /[\r\n\0]/.test(name) || name.length > 100 || name !== name.trim()) {
          fail('the feature must be 1 to 100 characters without CR, LF or NUL and without surrounding spaces');
          break;
        }
        const upper = name.toUpperCase();
        if (name === '*' && action === 'insert') {
          fail('* cannot be inserted (use accept or drop)');
          break;
        }
        if (action !== 'drop' && TLS_FEATURES.includes(upper.split(/[ ;]/)[0]!)) {
          fail(`${name} cannot be ${action}ed: AUTH, PBSZ and PROT follow tls_client (dropped with none, listed by the proxy with accept or require, the server's with passthrough)`);
          break;
        }
        const before = p.feat.get(upper);
        if (before) {
          fail(`${name} is already set on line ${before.line}`);
          break;
        }
        p.feat.set(upper, { action, text: name, line: lineNo });
        break;
      }
      case 'limits': {
        const w = words(1, 'zorp');
        if (!w) break;
        if (w[0] !== 'zorp') fail(`expected zorp (255/32/64), not "${w[0]}"`);
        break;
      }
      case 'max_line_length': {
        const v = number(1, MAX_COMMAND_BYTES);
        if (v !== null) p.limits.line = v;
        break;
      }
      case 'max_username_length': {
        const v = number(1, MAX_COMMAND_BYTES);
        if (v !== null) p.limits.username = v;
        break;
      }
      case 'max_password_length': {
        const v = number(1, MAX_COMMAND_BYTES);
        if (v !== null) p.limits.password = v;
        break;
      }
      case 'data_mode': {
        const w = words(1, 'keep, passive or active');
        if (!w) break;
        if (w[0] !== 'keep' && w[0] !== 'passive' && w[0] !== 'active') {
          fail(`expected keep, passive or active, not "${w[0]}"`);
          break;
        }
        p.dataMode = w[0];
        break;
      }
      case 'masquerade_client':
      case 'masquerade_server': {
        const w = words(1, 'a numeric IPv4 or IPv6 address');
        if (!w) break;
        const f = isIP(w[0]!);
        if (f !== 4 && f !== 6) {
          fail(`expected a numeric IPv4 or IPv6 address, not "${w[0]}"`);
          break;
        }
        const slot = k === 'masquerade_client' ? p.masqueradeClient : p.masqueradeServer;
        if (slot[f]) {
          fail(`an IPv${f} address is already set (${slot[f]}); give at most one per family`);
          break;
        }
        slot[f] = w[0]!.toLowerCase();
        break;
      }
      case 'tcp_keepalive': {
        const v = number(0, 7200);
        if (v !== null) p.tcpKeepalive = v;
        break;
      }
      default:
        parseTlsKey(k as TlsKey, args, lineNo, p.tls, fail);
    }
  }
  for (const t of checkTls(p.tls, tlsFiles)) issues.push({ file, line: p.tls.lines[t.key] ?? 0, key: t.key, message: t.message });
  issues.sort((a, b) => a.line - b.line); // stable: a line's own issues keep their order
  // limits zorp after an explicit max_*: the explicit values win wherever they appear.
  if (seen.has('limits')) p.limits = { ...ZORP_LIMITS, ...explicitLimits(p.limits, seen) };
  if (!explicitUnknown) p.permitUnknownCommand = p.profile === 'allow-all';
  return issues.length ? new PolicyError(issues) : p;
}

/** The max_* values given explicitly (so "limits zorp" never overrides them, whatever the order). */
function explicitLimits(l: Limits, seen: Map<Key, number>): Limits {
  const out: Limits = {};
  if (seen.has('max_line_length') && l.line !== undefined) out.line = l.line;
  if (seen.has('max_username_length') && l.username !== undefined) out.username = l.username;
  if (seen.has('max_password_length') && l.password !== undefined) out.password = l.password;
  return out;
}

function parseCommandRule(args: Token[], line: number, fail: (m: string) => void): CommandRule | null {
  const usage = 'expected VERB [match /regex/] accept | reject [CODE ["text"]] | drop';
  const verbTok = args[0];
  if (!verbTok || verbTok.kind !== 'word') {
    fail(usage);
    return null;
  }
  const verb = verbTok.text.toUpperCase();
  if (verb !== '*' && !/^[A-Z]{1,16}$/.test(verb)) {
    fail(`"${verbTok.text}" is not a command verb (letters only) or *`);
    return null;
  }
  let i = 1;
  let match: RegExp | undefined;
  if (args[i]?.kind === 'word' && args[i]!.text === 'match') {
    const re = args[i + 1];
    if (!re || re.kind !== 'regex') {
      fail('match needs a /regular expression/');
      return null;
    }
    if (!/^i?$/.test(re.flags)) {
      fail(`regular expression flags may only be i, not "${re.flags}"`);
      return null;
    }
    const compiled = compilePattern(re.text, re.flags);
    if ('error' in compiled) {
      fail(compiled.error);
      return null;
    }
    match = compiled;
    i += 2;
  }
  const act = args[i];
  if (!act || act.kind !== 'word') {
    fail(usage);
    return null;
  }
  const rest = args.slice(i + 1);
  let then: CommandAction;
  if (act.text === 'accept' || act.text === 'drop') {
    if (rest.length) {
      fail(`nothing may follow ${act.text}`);
      return null;
    }
    then = { action: act.text };
  } else if (act.text === 'reject') {
    if (rest.length > 2 || rest.some((t) => t.kind === 'regex') || (rest[0] && rest[0].kind !== 'word')) {
      fail('expected reject [CODE ["text"]]');
      return null;
    }
    const code = rest[0]?.text ?? '502';
    if (!/^[45]\d\d$/.test(code)) {
      fail(`a rejection needs a 4xx or 5xx code, not "${code}"`);
      return null;
    }
    const text = rest[1]?.text ?? 'Command not allowed by policy';
    const bad = checkText(text);
    if (bad) {
      fail(bad);
      return null;
    }
    then = { action: 'reject', code, text };
  } else {
    fail(`expected accept, reject or drop, not "${act.text}"`);
    return null;
  }
  const rule: CommandRule = { verb, then, line };
  if (match) rule.match = match;
  return rule;
}

function parseReplyRule(args: Token[], fail: (m: string) => void): { key: string; then: ReplyAction } | null {
  const usage = 'expected KEY accept | change CODE "text" | abort, where KEY is a verb or * followed by 0 to 3 digits of a reply code (PWD200, PWD2, *5, *)';
  const keyTok = args[0];
  const m = keyTok?.kind === 'word' ? /^([A-Za-z]{1,16}|\*)(\d{0,3})$/.exec(keyTok.text) : null;
  if (!m) {
    fail(usage);
    return null;
  }
  const code = m[2]!;
  if (code && !/^[1-5]/.test(code)) {
    fail(`reply codes begin with 1 to 5, not "${code}"`);
    return null;
  }
  const key = m[1]!.toUpperCase() + code;
  const act = args[1];
  const rest = args.slice(2);
  if (!act || act.kind !== 'word') {
    fail(usage);
    return null;
  }
  if (act.text === 'accept' || act.text === 'abort') {
    if (rest.length) {
      fail(`nothing may follow ${act.text}`);
      return null;
    }
    return { key, then: { action: act.text } };
  }
  if (act.text === 'change') {
    if (rest.length !== 2 || rest[0]!.kind !== 'word' || rest[1]!.kind === 'regex') {
      fail('expected change CODE "text"');
      return null;
    }
    if (!isCode(rest[0]!.text)) {
      fail(`expected a reply code (100 to 559), not "${rest[0]!.text}"`);
      return null;
    }
    const bad = checkText(rest[1]!.text);
    if (bad) {
      fail(bad);
      return null;
    }
    return { key, then: { action: 'change', code: rest[0]!.text, text: rest[1]!.text } };
  }
  fail(`expected accept, change or abort, not "${act.text}"`);
  return null;
}
