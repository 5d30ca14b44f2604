// The command line (src/config.ts): OpenBSD's flags, defaults, messages and exit status, plus our long
// options (spec sections 1 and 8, scenarios 1-3).
import { describe, expect, it } from 'vitest';
import { BACKENDS, checkNumeric, type Config, OPTSTRING, parseArgv, parseCommandLine, STATUS_USAGE, USAGE } from '../../src/config.js';

const INDENT = ' '.repeat(17);
const USAGE_TEXT =
  'usage: ftp-proxy [-6Adrv] [-a sourceaddr] [-b address] [-D level] [-m maxsessions]\n' +
  `${INDENT}[-P port] [-p port] [-q queue] [-R address] [-T tag]\n` +
  `${INDENT}[-f policy] [-t timeout]\n`;

function config(argv: string[]): Config {
  const r = parseCommandLine(argv, '1.2.3');
  if (!('config' in r)) throw new Error(`${JSON.stringify(argv)} exited ${r.exit}: ${r.stderr ?? r.stdout ?? ''}`);
  return r.config;
}

const DEFAULTS: Config = {
  ipv6: false,
  anonymousOnly: false,
  sourceAddresses: [],
  listenAddresses: ['127.0.0.1'],
  logLevel: 5,
  foreground: false,
  maxSessions: 100,
  loginTimeout: 30,
  fixedServerPort: '21',
  listenPort: '8021',
  port20: false,
  timeout: 86400,
  verbose: 0,
  backend: 'auto',
  logFormat: 'text',
  pinholeTimeout: 30,
  printRules: false,
};

describe('usage text', () => {
  it('is exactly the three OpenBSD lines', () => {
    expect(USAGE).toBe(USAGE_TEXT);
  });

  it('has its 2nd and 3rd lines indented by 17 spaces', () => {
    const lines = USAGE.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[3]).toBe('');
    expect(lines[0]!.startsWith('usage: ftp-proxy [')).toBe(true);
    expect(lines[1]!.match(/^ */)![0]).toHaveLength(17);
    expect(lines[2]!.match(/^ */)![0]).toHaveLength(17);
    expect(lines[1]![17]).toBe('[');
    expect(lines[2]![17]).toBe('[');
  });

  it('uses the OpenBSD getopt string', () => {
    expect(OPTSTRING).toBe('6Aa:b:D:df:m:P:p:q:R:rT:t:v');
  });
});

describe('defaults', () => {
  it('no flags: 127.0.0.1 port 8021, -D 5, -m 100, -t 86400, -P 21, verbose 0', () => {
    expect(parseCommandLine([])).toEqual({ config: DEFAULTS });
  });

  it('-6 listens on ::1', () => {
    expect(config(['-6'])).toEqual({ ...DEFAULTS, ipv6: true, listenAddresses: ['::1'] });
  });
});

describe('OpenBSD flags', () => {
  const q63 = 'q'.repeat(63);
  const t63 = 't'.repeat(63);
  it.each<[string[], Partial<Config>]>([
    [['-6'], { ipv6: true, listenAddresses: ['::1'] }],
    [['-6', '-b', '::'], { ipv6: true, listenAddresses: ['::'] }],
    [['-b', '::', '-6'], { ipv6: true, listenAddresses: ['::'] }],
    [['-b', '10.0.0.1'], { listenAddresses: ['10.0.0.1'] }],
    [['-b10.0.0.1'], { listenAddresses: ['10.0.0.1'] }],
    [['-b', '10.0.0.1', '-b', '10.0.0.2'], { listenAddresses: ['10.0.0.1', '10.0.0.2'] }],
    [['-b', '127.0.0.1', '-b', '::1'], { listenAddresses: ['127.0.0.1', '::1'] }],
    [['-b', '::1', '-b', '::1'], { listenAddresses: ['::1'] }],
    [['-a', '192.0.2.1', '-a', '2001:db8::1'], { sourceAddresses: ['192.0.2.1', '2001:db8::1'] }],
    [['-a', '192.0.2.1', '-a', '192.0.2.2'], { sourceAddresses: ['192.0.2.2'] }],
    [['-A'], { anonymousOnly: true }],
    [['-a', '192.0.2.1'], { sourceAddresses: ['192.0.2.1'] }],
    [['-D0'], { logLevel: 0 }],
    [['-D', '7'], { logLevel: 7 }],
    [['-D7'], { logLevel: 7 }],
    [['-D', ' 6'], { logLevel: 6 }],
    [['-D', '+3'], { logLevel: 3 }],
    [['-D', '07'], { logLevel: 7 }],
    [['-D', '7', '-D', '1'], { logLevel: 1 }],
    [['-d'], { foreground: true }],
    [['-m', '1'], { maxSessions: 1 }],
    [['-m500'], { maxSessions: 500 }],
    [['-P', '2121'], { fixedServerPort: '2121' }],
    [['-P', 'ftp'], { fixedServerPort: 'ftp' }],
    [['-p', '21'], { listenPort: '21' }],
    [['-p', 'ftp'], { listenPort: 'ftp' }],
    [['-q', q63], { queue: q63 }],
    [['-q', '1:10'], { queue: '1:10' }],
    [['-R', '10.0.0.21'], { fixedServer: '10.0.0.21' }],
    [['-R', 'ftp.example.org', '-P', '2121'], { fixedServer: 'ftp.example.org', fixedServerPort: '2121' }],
    [['-r'], { port20: true }],
    [['-T', t63], { tag: t63 }],
    [['-T', '42'], { tag: '42' }],
    [['--backend', 'pf', '-T', 'ftp_data-1.x'], { backend: 'pf', tag: 'ftp_data-1.x' }],
    [['--backend', 'pf', '-q', 'std:1'], { backend: 'pf', queue: 'std:1' }],
    [['-t', '0'], { timeout: 0 }],
    [['-t86400'], { timeout: 86400 }],
    [['-t', '30'], { timeout: 30 }],
    [['-v'], { verbose: 1 }],
    [['-vv'], { verbose: 2 }],
    [['-v', '-v'], { verbose: 2 }],
    [['-6Adrv'], { ipv6: true, anonymousOnly: true, foreground: true, port20: true, verbose: 1, listenAddresses: ['::1'] }],
    [['-dD7'], { foreground: true, logLevel: 7 }],
    [['-dD', '7'], { foreground: true, logLevel: 7 }],
    [['-D', '7', '-d'], { foreground: true, logLevel: 7 }],
    [['-d', '--'], { foreground: true }],
  ])('%j', (argv, expected) => {
    expect(config(argv)).toEqual({ ...DEFAULTS, ...expected });
  });
});

describe('OpenBSD errors: exit status 1 and the message', () => {
  const q64 = 'q'.repeat(64);
  const t64 = 't'.repeat(64);
  it.each<[string[], string]>([
    [['-D', '8'], 'ftp-proxy: loglevel too large\n'],
    [['-D8'], 'ftp-proxy: loglevel too large\n'],
    [['-D', '-1'], 'ftp-proxy: loglevel too small\n'],
    [['-D', 'x'], 'ftp-proxy: loglevel invalid\n'],
    [['-D', ''], 'ftp-proxy: loglevel invalid\n'],
    [['-D', '5x'], 'ftp-proxy: loglevel invalid\n'],
    [['-D', '99999999999999999999'], 'ftp-proxy: loglevel too large\n'],
    [['-m', '0'], 'ftp-proxy: max sessions too small\n'],
    [['-m', '501'], 'ftp-proxy: max sessions too large\n'],
    [['-m', 'many'], 'ftp-proxy: max sessions invalid\n'],
    [['-t', '86401'], 'ftp-proxy: timeout too large\n'],
    [['-t', '-1'], 'ftp-proxy: timeout too small\n'],
    [['-t', '1h'], 'ftp-proxy: timeout invalid\n'],
    [['-q', q64], 'ftp-proxy: queuename too long\n'],
    [['-q', 'q'.repeat(200)], 'ftp-proxy: queuename too long\n'],
    [['-T', t64], 'ftp-proxy: tagname too long\n'],
    // -T/-q reach pfctl as rule text: one word of pf's grammar, nothing that could end the rule
    [['-T', 'a b'], 'ftp-proxy: tagname invalid\n'],
    [['-T', 'x\npass all'], 'ftp-proxy: tagname invalid\n'],
    [['-T', 'x;'], 'ftp-proxy: tagname invalid\n'],
    [['-T', '"x"'], 'ftp-proxy: tagname invalid\n'],
    [['-T', '$macro'], 'ftp-proxy: tagname invalid\n'],
    [['-T', 'x#c'], 'ftp-proxy: tagname invalid\n'],
    [['-T', '{x}'], 'ftp-proxy: tagname invalid\n'],
    [['-T', ''], 'ftp-proxy: tagname invalid\n'],
    [['-T', 'étiquette'], 'ftp-proxy: tagname invalid\n'],
    [['--backend', 'pf', '-T', '42'], 'ftp-proxy: tagname invalid\n'],
    [['-T', '42', '--backend=pf'], 'ftp-proxy: tagname invalid\n'],
    [['-q', 'std queue'], 'ftp-proxy: queuename invalid\n'],
    [['-q', 'q)'], 'ftp-proxy: queuename invalid\n'],
    [['-q', "'q'"], 'ftp-proxy: queuename invalid\n'],
    [['--backend', 'pf', '-q', '7'], 'ftp-proxy: queuename invalid\n'],
    [['-vvv'], USAGE_TEXT],
    [['-v', '-v', '-v'], USAGE_TEXT],
    [['-vv', '-v'], USAGE_TEXT],
    [['-x'], `ftp-proxy: unknown option -- x\n${USAGE_TEXT}`],
    [['-N'], `ftp-proxy: unknown option -- N\n${USAGE_TEXT}`],
    [['-dx'], `ftp-proxy: unknown option -- x\n${USAGE_TEXT}`],
    [['-D'], `ftp-proxy: option requires an argument -- D\n${USAGE_TEXT}`],
    [['-d', '-T'], `ftp-proxy: option requires an argument -- T\n${USAGE_TEXT}`],
    [['stray'], USAGE_TEXT],
    [['-d', 'stray'], USAGE_TEXT],
    [['-'], USAGE_TEXT],
    [['--', 'x'], USAGE_TEXT],
    [['--', '-d'], USAGE_TEXT],
    // options are taken left to right, as OpenBSD's getopt loop does
    [['-D', '8', '-x'], 'ftp-proxy: loglevel too large\n'],
    [['-x', '-D', '8'], `ftp-proxy: unknown option -- x\n${USAGE_TEXT}`],
    [['-D', '8', 'stray'], 'ftp-proxy: loglevel too large\n'],
    [['-vvv', '-x'], USAGE_TEXT],
    [['-m', '0', '-D', '8'], 'ftp-proxy: max sessions too small\n'],
  ])('%j', (argv, stderr) => {
    expect(parseCommandLine(argv)).toEqual({ exit: 1, stderr });
  });
});

describe('long options', () => {
  it('--help: exit 0, the usage then the long help on stdout', () => {
    const r = parseCommandLine(['--help']);
    expect(r).toMatchObject({ exit: 0 });
    if (!('exit' in r)) return;
    expect(r.stderr).toBeUndefined();
    expect(r.stdout?.startsWith(USAGE_TEXT)).toBe(true);
    expect(r.stdout!.length).toBeGreaterThan(USAGE_TEXT.length);
    for (const name of ['--backend', '--pidfile', '--log-format', '--pinhole-timeout', '--help', '--version']) {
      expect(r.stdout).toContain(name);
    }
  });

  it.each([[['--help', '-d']], [['-d', '--help']], [['-D', '7', '--help']]])('%j is help too', (argv) => {
    expect(parseCommandLine(argv)).toMatchObject({ exit: 0, stdout: expect.stringMatching(/^usage: ftp-proxy /) });
  });

  it.each([[['--version']], [['-d', '--version']]])('%j: exit 0, "ftp-proxy <version>"', (argv) => {
    expect(parseCommandLine(argv, '1.2.3')).toEqual({ exit: 0, stdout: 'ftp-proxy 1.2.3\n' });
  });

  it('lists the backends', () => {
    expect([...BACKENDS]).toEqual(['auto', 'nftables', 'iptables', 'pf']);
  });

  it.each<[string[], Partial<Config>]>([
    [[], { backend: 'auto' }],
    [['--backend', 'auto'], { backend: 'auto' }],
    [['--backend', 'nftables'], { backend: 'nftables' }],
    [['--backend=iptables'], { backend: 'iptables' }],
    [['--backend', 'pf'], { backend: 'pf' }],
    [['--backend=pf', '--backend=nftables'], { backend: 'nftables' }],
    [['--log-format', 'json'], { logFormat: 'json' }],
    [['--log-format=text'], { logFormat: 'text' }],
    [['--pinhole-timeout', '1'], { pinholeTimeout: 1 }],
    [['--pinhole-timeout=3600'], { pinholeTimeout: 3600 }],
    [['--pinhole-timeout', '0060'], { pinholeTimeout: 60 }],
    [['--max-per-client', '3'], { maxPerClient: 3 }],
    [['--max-per-client=500', '-m', '10'], { maxPerClient: 500, maxSessions: 10 }],
    [['--login-timeout', '0'], { loginTimeout: 0 }],
    [['--login-timeout=120'], { loginTimeout: 120 }],
    [['--pidfile', '/run/ftp-proxy.pid'], { pidfile: '/run/ftp-proxy.pid' }],
    [['--pidfile=/tmp/p=1.pid'], { pidfile: '/tmp/p=1.pid' }],
    [['--pidfile', '-x'], { pidfile: '-x' }],
    [['--pidfile', '123'], { pidfile: '123' }],
    [['--print-rules'], { printRules: true }],
    [['--print-rules', '-6', '-R', '2001:db8::21', '-vv'], { printRules: true, ipv6: true, fixedServer: '2001:db8::21', verbose: 2, listenAddresses: ['::1'] }],
    // long and short options mixed, in any order
    [['--backend', 'pf', '-6'], { backend: 'pf', ipv6: true, listenAddresses: ['::1'] }],
    [['-6', '--backend', 'pf'], { backend: 'pf', ipv6: true, listenAddresses: ['::1'] }],
    [['-D', '7', '--backend=nftables', '-d'], { logLevel: 7, backend: 'nftables', foreground: true }],
    [
      ['-d', '--backend', 'nftables', '-D', '7', '--log-format=json', '-v', '--pidfile', '/tmp/f', '-T', 'mark', '--pinhole-timeout', '5'],
      {
        foreground: true,
        backend: 'nftables',
        logLevel: 7,
        logFormat: 'json',
        verbose: 1,
        pidfile: '/tmp/f',
        tag: 'mark',
        pinholeTimeout: 5,
      },
    ],
    // a separate short-option argument is taken whatever it looks like, as getopt does
    [['-T', '--mark'], { tag: '--mark' }],
    [['-dT', '--backend'], { foreground: true, tag: '--backend' }],
    [['-q', '--x', '--backend', 'pf'], { queue: '--x', backend: 'pf' }],
  ])('%j', (argv, expected) => {
    expect(config(argv)).toEqual({ ...DEFAULTS, ...expected });
  });

  it.each<[string[], RegExp]>([
    [['--backend', 'nft'], /^ftp-proxy: --backend nft: must be one of auto, nftables, iptables, pf\n$/],
    [['--backend', 'NFTABLES'], /^ftp-proxy: --backend NFTABLES: /],
    [['--backend='], /^ftp-proxy: --backend : /],
    [['--backend', '-d'], /^ftp-proxy: --backend -d: /],
    [['--log-format', 'xml'], /^ftp-proxy: --log-format xml: must be one of text, json\n$/],
    [['--log-format', '--backend', 'pf'], /^ftp-proxy: --log-format --backend: /],
    [['--pinhole-timeout', '0'], /^ftp-proxy: pinhole timeout too small\n$/],
    [['--pinhole-timeout', '3601'], /^ftp-proxy: pinhole timeout too large\n$/],
    [['--pinhole-timeout', '30s'], /^ftp-proxy: pinhole timeout invalid\n$/],
    [['--max-per-client', '0'], /^ftp-proxy: max per client too small\n$/],
    [['--max-per-client', '501'], /^ftp-proxy: max per client too large\n$/],
    [['--login-timeout', '86401'], /^ftp-proxy: login timeout too large\n$/],
    [['--login-timeout', '-1'], /^ftp-proxy: login timeout too small\n$/],
  ])('%j: exit 1 with a one-line message', (argv, message) => {
    const r = parseCommandLine(argv);
    expect(r).toEqual({ exit: 1, stderr: expect.stringMatching(message) });
    if ('exit' in r) expect(r.stderr!.split('\n')).toHaveLength(2);
  });

  it.each<[string[], string]>([
    [['--backend'], 'backend'],
    [['-d', '--pidfile'], 'pidfile'],
    [['--log-format'], 'log-format'],
    [['--pinhole-timeout'], 'pinhole-timeout'],
    [['--max-per-client'], 'max-per-client'],
    [['--login-timeout'], 'login-timeout'],
  ])('%j: a missing value is an error', (argv, name) => {
    expect(parseCommandLine(argv)).toEqual({ exit: 1, stderr: `ftp-proxy: option requires an argument -- ${name}\n${USAGE_TEXT}` });
  });

  it.each([[['--bogus']], [['--bogus=1']], [['--Backend=pf']], [['--6']], [['-d', '--nope', '-v']], [['--help', '--bogus']]])(
    '%j: unknown long option, exit 1 with the usage',
    (argv) => {
      const r = parseCommandLine(argv);
      expect(r).toEqual({ exit: 1, stderr: expect.stringMatching(/^ftp-proxy: .+\n/) });
      if ('exit' in r) expect(r.stderr!.endsWith(USAGE_TEXT)).toBe(true);
    },
  );

  it('after "--" every word is an operand, even one that looks like a long option', () => {
    expect(parseCommandLine(['--', '--backend', 'pf'])).toEqual({ exit: 1, stderr: USAGE_TEXT });
  });
});

describe('ftp-proxy status', () => {
  it.each<[string[], { backend: string; json: boolean; watch: boolean }]>([
    [['status'], { backend: 'auto', json: false, watch: false }],
    [['status', '--json'], { backend: 'auto', json: true, watch: false }],
    [['status', '--backend', 'iptables'], { backend: 'iptables', json: false, watch: false }],
    [['status', '--backend=pf', '--json'], { backend: 'pf', json: true, watch: false }],
    [['status', '--watch'], { backend: 'auto', json: false, watch: true }],
  ])('%j', (argv, expected) => {
    expect(parseArgv(argv)).toEqual({ status: expected });
  });

  it.each<[string[], number, RegExp]>([
    [['status', '--help'], 0, /^usage: ftp-proxy status /],
    [['status', '--backend', 'nft'], 1, /^ftp-proxy: --backend nft: must be one of/],
    [['status', 'extra'], 1, /^ftp-proxy: Unknown argument: extra\nusage: ftp-proxy status /],
    [['status', '-v'], 1, /^ftp-proxy: Unknown argument/],
    [['status', '--json', '--watch'], 1, /^ftp-proxy: --json and --watch do not go together\n/],
  ])('%j exits %i', (argv, exit, text) => {
    const r = parseArgv(argv);
    expect('exit' in r && r.exit).toBe(exit);
    expect('exit' in r && (r.stdout ?? r.stderr)).toMatch(text);
  });

  it('is only a command in first place: elsewhere it is an extra argument (usage)', () => {
    expect(parseArgv(['-d', 'status'])).toEqual({ exit: 1, stderr: USAGE });
    expect(STATUS_USAGE).toMatch(/--json/);
  });
});

describe('-f policy and --check-config', () => {
  it.each<[string[], Partial<Config>]>([
    [['-f', '/etc/ftp-proxy.policy'], { policyFile: '/etc/ftp-proxy.policy' }],
    [['-dfx.policy'], { foreground: true, policyFile: 'x.policy' }],
    [['--check-config', '-f', 'p'], { policyFile: 'p', checkConfig: true }],
  ])('%j', (argv, want) => {
    expect(config(argv)).toMatchObject(want);
  });

  it('-f needs an argument', () => {
    expect(parseCommandLine(['-f'])).toEqual({ exit: 1, stderr: `ftp-proxy: option requires an argument -- f\n${USAGE_TEXT}` });
  });

  it('without them the config has neither', () => {
    const c = config([]);
    expect('policyFile' in c || 'checkConfig' in c).toBe(false);
  });
});

describe('checkNumeric (-a, -b)', () => {
  it.each<[string, boolean, string | null]>([
    ['10.0.0.1', false, null],
    ['10.0.0.1', true, '-b 10.0.0.1: not an IPv6 address (-6)'],
    ['::1', true, null],
    ['::1', false, null], // without -6 an instance may listen on both families
    ['::ffff:10.0.0.1', true, null],
    ['localhost', false, '-b localhost: not a numeric address'],
    ['localhost', true, '-b localhost: not a numeric address'],
    ['010.0.0.1', false, '-b 010.0.0.1: not a numeric address'],
    ['', false, '-b : not a numeric address'],
  ])('%j with -6 %s -> %j', (address, ipv6, expected) => {
    expect(checkNumeric('-b', address, ipv6)).toBe(expected);
  });
});
