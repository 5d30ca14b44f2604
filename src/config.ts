// The command line: OpenBSD's flags, defaults, ranges, messages and exit status, plus our long options.
// Pure: argv in, Config or (exit status, text) out; src/cli.ts does the printing and exiting.
import yargs from 'yargs';
import { completionScript, type Shell, SHELLS } from './completion.js';
import { getopt, strtonum } from './getopt.js';
import type { Level } from './levels.js';
import type { LogFormat } from './log.js';
import { familyOf } from './net/address.js';

export const OPTSTRING = '6Aa:b:D:df:m:P:p:q:R:rT:t:v';

export const USAGE =
  'usage: ftp-proxy [-6Adrv] [-a sourceaddr] [-b address] [-D level] [-m maxsessions]\n' +
  '                 [-P port] [-p port] [-q queue] [-R address] [-T tag]\n' +
  '                 [-f policy] [-t timeout]\n';

export const BACKENDS = ['auto', 'nftables', 'iptables', 'pf'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export interface Config {
  /** -6: IPv6 mode (listen on ::1 by default, EPSV/EPRT only). */
  ipv6: boolean;
  /** -A: anonymous users only. */
  anonymousOnly: boolean;
  /**
   * -a: source addresses of the connections to servers, at most one per family (a later one replaces an
   * earlier one of its family, as OpenBSD keeps the last).
   */
  sourceAddresses: string[];
  /**
   * -b: listen addresses. OpenBSD keeps the last -b; here each one given gets a listener, so one
   * instance can serve IPv4 and IPv6 (-b 127.0.0.1 -b ::1).
   */
  listenAddresses: string[];
  /** -D: log priority threshold. */
  logLevel: Level;
  /** -d: stay in the foreground, log to stderr. */
  foreground: boolean;
  /** -m: concurrent session limit. */
  maxSessions: number;
  /** --max-per-client: sessions one client address may hold (default a quarter of -m, at least 1). */
  maxPerClient?: number;
  /** --login-timeout: seconds from connect to the server's 230; 0 = none. */
  loginTimeout: number;
  /** -P: port of the fixed server (-R). */
  fixedServerPort: string;
  /** -p: listen port. */
  listenPort: string;
  /** -q: queue (pf) / tc class (Linux). */
  queue?: string;
  /** -R: reverse mode, the fixed server. */
  fixedServer?: string;
  /** -r: active-mode PORT data connections come from port 20. */
  port20: boolean;
  /** -T: tag (pf) / conntrack mark (Linux). */
  tag?: string;
  /** -t: idle timeout, seconds; 0 = none. */
  timeout: number;
  /** -v count: pinholes log their first (1) or every (2) packet. */
  verbose: 0 | 1 | 2;
  backend: BackendChoice;
  pidfile?: string;
  logFormat: LogFormat;
  /** Seconds an unused pinhole waits for its data connection. */
  pinholeTimeout: number;
  /** Run as this user, keeping only CAP_NET_ADMIN (Linux). */
  user?: string;
  /** --metrics ADDRESS:PORT: serve Prometheus metrics there (GET /metrics). */
  metrics?: { host: string; port: number };
  /** --print-rules: print what a negotiation would install with these flags, change nothing, exit. */
  printRules: boolean;
  /** -f: the policy file (ftp-proxy(8), POLICY FILE); without it OpenBSD's behaviour. */
  policyFile?: string;
  /** --check-config: check the flags and the policy file, say what is wrong, exit. */
  checkConfig?: true;
}

/** `ftp-proxy status`: read the firewall, list sessions and pinholes. */
export interface StatusCommand {
  backend: BackendChoice;
  json: boolean;
  /** --watch: redraw every second until interrupted. */
  watch: boolean;
}

export type Exit = { exit: number; stdout?: string; stderr?: string };
export type ParseOutcome = { config: Config } | Exit;
/** What the command line asks for: the daemon (or --print-rules), `status`, or an exit. */
export type CommandOutcome = ParseOutcome | { status: StatusCommand };

export function parseArgv(argv: string[], version = '0.0.0'): CommandOutcome {
  if (argv[0] === 'completion') return parseCompletion(argv.slice(1));
  return argv[0] === 'status' ? parseStatus(argv.slice(1)) : parseCommandLine(argv, version);
}

export const STATUS_USAGE = 'usage: ftp-proxy status [--backend auto|nftables|iptables|pf] [--json | --watch]\n';
export const COMPLETION_USAGE = 'usage: ftp-proxy completion bash|zsh\n';

/** `ftp-proxy completion bash|zsh`: the shell's completion script, from this file's option table. */
export function parseCompletion(argv: string[]): Exit {
  const shell = argv[0];
  if (argv.length !== 1 || !(SHELLS as readonly string[]).includes(shell!)) return { exit: 1, stderr: COMPLETION_USAGE };
  return { exit: 0, stdout: completionScript(shell as Shell, { optstring: OPTSTRING, longHelp: LONG_HELP, statusUsage: STATUS_USAGE, backends: BACKENDS }) };
}

/** Long options that take a value; everything else starting with "--" is a switch. */
const LONG_WITH_VALUE = new Set(['backend', 'pidfile', 'log-format', 'pinhole-timeout', 'user', 'max-per-client', 'login-timeout', 'metrics']);

export const LONG_HELP = `${USAGE}
OpenBSD ftp-proxy(8) flags:
  -6              IPv6 mode: listen on ::1, only IPv6 addresses
  -A              only anonymous logins (USER ftp, USER anonymous)
  -a sourceaddr   source address of the connections to servers (one per family)
  -b address      listen address (default 127.0.0.1, or ::1 with -6); give -b
                  twice (127.0.0.1 and ::1) to serve IPv4 and IPv6 at once
  -D level        log priority threshold 0-7 (default 5)
  -d              stay in the foreground and log to stderr
  -f policy       policy file: command, reply and FEAT policy, length limits,
                  data mode, masquerade addresses (ftp-proxy(8), POLICY FILE);
                  SIGUSR1 reloads it for new sessions
  -m maxsessions  concurrent sessions, 1-500 (default 100)
  -P port         port of the fixed server given with -R (default 21)
  -p port         listen port (default 8021)
  -q queue        pf: queue for data connections; Linux: tc class major:minor
  -R address      reverse mode: every session goes to this server
  -r              active mode: PORT data connections come from port 20
  -T tag          pf: tag data-connection rules (match, not pass);
                  Linux: a conntrack mark (a number) your ruleset accepts
  -t timeout      idle timeout in seconds, 0-86400 (default 86400, 0 = none)
  -v              pinholes log the first packet; -vv every packet

Our options:
  --backend NAME          auto, nftables, iptables or pf (default auto)
  --pidfile PATH          pid file (default /run/ftp-proxy.pid when daemonized)
  --log-format text|json  OpenBSD's text lines (default) or JSON lines
  --pinhole-timeout SEC   how long an unused pinhole waits, 1-3600 (default 30;
                          nftables and iptables: pf rules stay until replaced)
  --max-per-client N      sessions one client address may hold, 1-500
                          (default a quarter of -m, at least 1)
  --login-timeout SEC     a client must have logged in (230) within SEC seconds
                          of connecting, 0-86400 (default 30, 0 = no limit)
  --user NAME             Linux, started as root: run as NAME (default ftp-proxy
                          when it exists) with only CAP_NET_ADMIN; sessions are
                          served by a child process with no capability at all
  --metrics ADDR:PORT     serve Prometheus metrics at http://ADDR:PORT/metrics
                          (a port of 1024 or more; [v6]:PORT for IPv6)
  --print-rules           print the firewall rules a passive and an active
                          negotiation would install with the other flags given
                          (example addresses), change nothing, exit
  --help                  this text
  --version               the version
  --check-config          run start-up's checks (flags, addresses, -R, -T/-q,
                          --user, the -f policy and its files) without starting;
                          print every problem, exit 1 where start would fail

Commands:
  ftp-proxy ca create DIR
                          a new CA for FTPS forward mode (tls_ca_certificate,
                          tls_ca_key): DIR/ca.key (0600) and DIR/ca.crt to deploy
  ftp-proxy status [--backend NAME] [--json | --watch]
                          the live sessions and pinholes, read from the firewall
  ftp-proxy completion bash|zsh
                          a completion script for the shell (scripts/install.sh
                          installs both)

See ftp-proxy(8).
`;

/** What both command lines share: strict, no exits, values kept as strings; --backend and --help. */
function longParser(argv: string[], name: string, onFail: (msg: string) => void) {
  return yargs(argv)
    .scriptName(name)
    .help(false)
    .version(false)
    .parserConfiguration({ 'camel-case-expansion': false, 'parse-numbers': false, 'duplicate-arguments-array': false })
    .strict()
    .exitProcess(false)
    .fail(onFail)
    .option('backend', { type: 'string', default: 'auto' })
    .option('help', { type: 'boolean', default: false });
}

/** `ftp-proxy status ...` (argv after "status"). */
export function parseStatus(argv: string[]): { status: StatusCommand } | Exit {
  let error: string | null = null;
  const a = longParser(argv, 'ftp-proxy status', (msg) => {
    error = msg;
  })
    .option('json', { type: 'boolean', default: false })
    .option('watch', { type: 'boolean', default: false })
    .parseSync();
  if (error) return { exit: 1, stderr: `ftp-proxy: ${error}\n${STATUS_USAGE}` };
  if (a.help) return { exit: 0, stdout: STATUS_USAGE };
  if (!(BACKENDS as readonly string[]).includes(a.backend)) {
    return { exit: 1, stderr: `ftp-proxy: --backend ${a.backend}: must be one of ${BACKENDS.join(', ')}\n` };
  }
  if (a.json && a.watch) return { exit: 1, stderr: `ftp-proxy: --json and --watch do not go together\n${STATUS_USAGE}` };
  return { status: { backend: a.backend as BackendChoice, json: a.json, watch: a.watch } };
}

export function parseCommandLine(argv: string[], version = '0.0.0'): ParseOutcome {
  // Long options go to yargs, the rest to getopt (OpenBSD's exact short-option grammar).
  const long: string[] = [];
  const short: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      short.push(...argv.slice(i));
      break;
    }
    if (a.startsWith('--')) {
      const name = a.slice(2).split('=')[0]!;
      if (a.includes('=') || !LONG_WITH_VALUE.has(name)) long.push(a);
      else if (i + 1 < argv.length) long.push(`${a}=${argv[++i]!}`); // "=" so yargs never reads the value as an option
      else return { exit: 1, stderr: `ftp-proxy: option requires an argument -- ${name}\n${USAGE}` };
    } else {
      short.push(a);
      // "-T --x": a separate option argument is getopt's, whatever it looks like.
      if (shortTakesNext(a) && i + 1 < argv.length) short.push(argv[++i]!);
    }
  }

  let longError: string | null = null;
  const parsedLong = longParser(long, 'ftp-proxy', (msg) => {
    longError = msg;
  })
    .option('pidfile', { type: 'string' })
    .option('log-format', { type: 'string', default: 'text' })
    .option('pinhole-timeout', { type: 'string', default: '30' })
    .option('max-per-client', { type: 'string' })
    .option('login-timeout', { type: 'string', default: '30' })
    .option('user', { type: 'string' })
    .option('metrics', { type: 'string' })
    .option('print-rules', { type: 'boolean', default: false })
    .option('check-config', { type: 'boolean', default: false })
    .option('version', { type: 'boolean', default: false })
    .parseSync();
  if (longError) return { exit: 1, stderr: `ftp-proxy: ${longError}\n${USAGE}` };
  if (parsedLong.help) return { exit: 0, stdout: LONG_HELP };
  if (parsedLong.version) return { exit: 0, stdout: `ftp-proxy ${version}\n` };
  const choice = (name: string, value: string, allowed: readonly string[]): ParseOutcome | null =>
    allowed.includes(value) ? null : { exit: 1, stderr: `ftp-proxy: --${name} ${value}: must be one of ${allowed.join(', ')}\n` };
  const bad = choice('backend', parsedLong.backend, BACKENDS) ?? choice('log-format', parsedLong['log-format'], ['text', 'json']);
  if (bad) return bad;

  const g = getopt(short, OPTSTRING);

  const c: Config = {
    ipv6: false,
    anonymousOnly: false,
    sourceAddresses: [],
    listenAddresses: [],
    logLevel: 5,
    foreground: false,
    maxSessions: 100,
    loginTimeout: 30,
    fixedServerPort: '21',
    listenPort: '8021',
    port20: false,
    timeout: 86400,
    verbose: 0,
    backend: parsedLong.backend as BackendChoice,
    logFormat: parsedLong['log-format'] as LogFormat,
    pinholeTimeout: 30,
    printRules: parsedLong['print-rules'],
  };
  if (parsedLong.pidfile) c.pidfile = parsedLong.pidfile;
  if (parsedLong.user) c.user = parsedLong.user;
  if (parsedLong.metrics !== undefined) {
    const m = parseMetricsAddress(parsedLong.metrics);
    // The network process serves it, and holds no CAP_NET_BIND_SERVICE.
    if (!m || m.port < 1024) return { exit: 1, stderr: `ftp-proxy: --metrics ${parsedLong.metrics}: must be ADDRESS:PORT with a port of 1024 or more\n` };
    c.metrics = m;
  }
  if (parsedLong['check-config']) c.checkConfig = true;
  const pt = strtonum(String(parsedLong['pinhole-timeout']), 1, 3600);
  if ('error' in pt) return { exit: 1, stderr: `ftp-proxy: pinhole timeout ${pt.error}\n` };
  c.pinholeTimeout = pt.value;
  const lt = strtonum(String(parsedLong['login-timeout']), 0, 86400);
  if ('error' in lt) return { exit: 1, stderr: `ftp-proxy: login timeout ${lt.error}\n` };
  c.loginTimeout = lt.value;
  if (parsedLong['max-per-client'] !== undefined) {
    const mp = strtonum(String(parsedLong['max-per-client']), 1, 500);
    if ('error' in mp) return { exit: 1, stderr: `ftp-proxy: max per client ${mp.error}\n` };
    c.maxPerClient = mp.value;
  }

  const err = (text: string): ParseOutcome => ({ exit: 1, stderr: `ftp-proxy: ${text}\n` });
  const pfNames = c.backend === 'pf' || (c.backend === 'auto' && process.platform === 'openbsd');
  for (const { opt, arg = '' } of g.options) {
    switch (opt) {
      case '6':
        c.ipv6 = true;
        break;
      case 'A':
        c.anonymousOnly = true;
        break;
      case 'a':
        c.sourceAddresses = [...c.sourceAddresses.filter((a) => familyOf(a) !== familyOf(arg)), arg];
        break;
      case 'b':
        if (!c.listenAddresses.includes(arg)) c.listenAddresses.push(arg);
        break;
      case 'D': {
        const r = strtonum(arg, 0, 7);
        if ('error' in r) return err(`loglevel ${r.error}`);
        c.logLevel = r.value as Level;
        break;
      }
      case 'd':
        c.foreground = true;
        break;
      case 'f':
        c.policyFile = arg;
        break;
      case 'm': {
        const r = strtonum(arg, 1, 500);
        if ('error' in r) return err(`max sessions ${r.error}`);
        c.maxSessions = r.value;
        break;
      }
      case 'P':
        c.fixedServerPort = arg;
        break;
      case 'p':
        c.listenPort = arg;
        break;
      case 'q':
        if (arg.length >= 64) return err('queuename too long');
        if (!pfName(arg, pfNames)) return err('queuename invalid');
        c.queue = arg;
        break;
      case 'R':
        c.fixedServer = arg;
        break;
      case 'r':
        c.port20 = true;
        break;
      case 'T':
        if (arg.length >= 64) return err('tagname too long');
        if (!pfName(arg, pfNames)) return err('tagname invalid');
        c.tag = arg;
        break;
      case 't': {
        const r = strtonum(arg, 0, 86400);
        if ('error' in r) return err(`timeout ${r.error}`);
        c.timeout = r.value;
        break;
      }
      case 'v':
        if (c.verbose === 2) return { exit: 1, stderr: USAGE };
        c.verbose = (c.verbose + 1) as 1 | 2;
        break;
    }
  }
  // After the options before them, as OpenBSD's getopt loop meets them: "-D 8 -x" is "loglevel too large".
  if (g.error) return { exit: 1, stderr: `ftp-proxy: ${g.error}\n${USAGE}` };
  if (g.rest.length) return { exit: 1, stderr: USAGE };
  if (!c.listenAddresses.length) c.listenAddresses = [c.ipv6 ? '::1' : '127.0.0.1'];
  return { config: c };
}

/**
 * -T and -q reach pfctl as rule text (`tag T`, `set queue Q`), unquoted: they must be one word of pf's
 * grammar and nothing more. Letters, digits and _ . : - (a subset of what pf.conf's lexer takes in an
 * unquoted string; no blank, quote, brace, comment or macro). For pf a name that is all digits would be
 * read as a number, not a name; on Linux -T is exactly that (a conntrack mark, checked later).
 */
export function pfName(name: string, pf: boolean): boolean {
  return /^[A-Za-z0-9_.:-]+$/.test(name) && !(pf && /^\d+$/.test(name));
}

/** Whether a short-option word ("-dT") ends with an option whose argument is the next word. */
function shortTakesNext(word: string): boolean {
  if (!word.startsWith('-') || word === '-') return false;
  for (let j = 1; j < word.length; j++) {
    const k = OPTSTRING.indexOf(word[j]!);
    if (word[j] === ':' || k < 0) return false;
    if (OPTSTRING[k + 1] === ':') return j === word.length - 1;
  }
  return false;
}

/**
 * -a, -b: numeric addresses (AI_NUMERICHOST, as OpenBSD); with -6 of IPv6 only. Without -6 either family
 * (a dual-stack instance). Returns the error text, or null.
 */
export function checkNumeric(what: string, address: string, ipv6: boolean): string | null {
  const f = familyOf(address);
  if (f === null) return `${what} ${address}: not a numeric address`;
  if (ipv6 && f !== 6) return `${what} ${address}: not an IPv6 address (-6)`;
  return null;
}

/** "ADDRESS:PORT" or "[v6]:PORT" (--metrics); null when malformed. */
export function parseMetricsAddress(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1] ?? m[2]!, port };
}
