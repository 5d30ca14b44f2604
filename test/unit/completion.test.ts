// Shell completion: generated from the option table, it offers every option --help lists; bash's is
// run for real (the function the script defines, with COMP_WORDS set as bash would), zsh's is parsed
// by zsh and holds a spec for every option.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { options, statusOptions } from '../../src/completion.js';
import { BACKENDS, LONG_HELP, OPTSTRING, parseArgv, STATUS_USAGE } from '../../src/config.js';

const TABLE = { optstring: OPTSTRING, longHelp: LONG_HELP, statusUsage: STATUS_USAGE, backends: BACKENDS };
const SHORT = OPTSTRING.replace(/:/g, '')
  .split('')
  .map((c) => `-${c}`);
const LONG = [...LONG_HELP.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]!);

function script(shell: 'bash' | 'zsh'): string {
  const r = parseArgv(['completion', shell]);
  if (!('exit' in r) || r.exit !== 0 || !r.stdout) throw new Error(`completion ${shell}: ${JSON.stringify(r)}`);
  return r.stdout;
}

/** COMPREPLY of the generated bash function for a command line ending in the word being completed. */
function bashComplete(words: string[]): string[] {
  const prog = `${script('bash')}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}
_ftp_proxy; printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync('bash', ['-c', prog], { encoding: 'utf8', cwd: '/' })
    .split('\n')
    .filter(Boolean);
}

describe('the option table', () => {
  it('has every short option of OPTSTRING and every long option of --help, once', () => {
    const flags = options(TABLE).map((o) => o.flag);
    expect(new Set(flags).size).toBe(flags.length);
    expect([...flags].sort()).toEqual([...SHORT, ...LONG].sort());
    expect(LONG.length).toBeGreaterThan(5);
  });

  it('knows which options take a value, as the getopt string says', () => {
    const o = Object.fromEntries(options(TABLE).map((x) => [x.flag, x.arg]));
    expect(o['-b']).toBe('address');
    expect(o['-6']).toBeUndefined();
    expect(o['--log-format']).toBe('text|json');
    expect(o['--print-rules']).toBeUndefined();
    // Its whole --help text, continuation lines joined.
    expect(options(TABLE).find((x) => x.flag === '--pinhole-timeout')!.help).toBe('how long an unused pinhole waits, 1-3600 (default 30; nftables and iptables: pf rules stay until replaced)');
  });

  it('refuses a table whose --help lacks a getopt option (the generator cannot drift silently)', () => {
    expect(() => options({ ...TABLE, optstring: `${OPTSTRING}Z` })).toThrow(/-Z is in OPTSTRING but not in LONG_HELP/);
    expect(() => options({ ...TABLE, optstring: OPTSTRING.replace('b:', 'b') })).toThrow(/-b: OPTSTRING and LONG_HELP disagree/);
  });

  it('status options come from its usage line', () => {
    expect(statusOptions(TABLE)).toEqual(['--backend', '--json', '--watch', '--help']);
  });
});

describe('ftp-proxy completion', () => {
  it('bash|zsh only', () => {
    expect(parseArgv(['completion'])).toMatchObject({ exit: 1, stderr: 'usage: ftp-proxy completion bash|zsh\n' });
    expect(parseArgv(['completion', 'fish'])).toMatchObject({ exit: 1 });
    expect(parseArgv(['completion', 'bash', 'zsh'])).toMatchObject({ exit: 1 });
  });

  it('is listed in --help', () => {
    expect(LONG_HELP).toMatch(/^ {2}ftp-proxy completion bash\|zsh$/m);
  });
});

describe('bash', () => {
  it('offers every option and the commands for the first word', () => {
    expect(bashComplete(['ftp-proxy', '']).sort()).toEqual([...SHORT, ...LONG, 'completion', 'status'].sort());
  });

  it('offers every option after other options, and completes a prefix', () => {
    expect(bashComplete(['ftp-proxy', '-d', '']).sort()).toEqual([...SHORT, ...LONG].sort());
    expect(bashComplete(['ftp-proxy', '--p'])).toEqual(['--pidfile', '--pinhole-timeout', '--print-rules']);
  });

  it('completes the values the table names', () => {
    expect(bashComplete(['ftp-proxy', '--backend', ''])).toEqual([...BACKENDS]);
    expect(bashComplete(['ftp-proxy', '--log-format', ''])).toEqual(['text', 'json']);
    expect(bashComplete(['ftp-proxy', '-D', ''])).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    expect(bashComplete(['ftp-proxy', '-f', 'et'])).toEqual(['etc']); // files (cwd /)
    expect(bashComplete(['ftp-proxy', '--user', 'roo'])).toContain('root');
    expect(bashComplete(['ftp-proxy', '-b', ''])).toEqual([]); // an address: nothing to guess
  });

  it('completes status and completion', () => {
    expect(bashComplete(['ftp-proxy', 'status', ''])).toEqual(['--backend', '--json', '--watch', '--help']);
    expect(bashComplete(['ftp-proxy', 'status', '--backend', 'n'])).toEqual(['nftables']);
    expect(bashComplete(['ftp-proxy', 'completion', ''])).toEqual(['bash', 'zsh']);
  });
});

describe('zsh', () => {
  const text = script('zsh');

  it('zsh parses it', () => {
    execFileSync('zsh', ['-n'], { input: text });
  });

  it.each([...SHORT, ...LONG])('has a spec for %s', (flag) => {
    expect(text).toMatch(new RegExp(`^ {4}'\\*?${flag}(=)?\\[`, 'm'));
  });

  it('values: backends, text|json, files for -f, users for --user; status and completion', () => {
    expect(text).toContain(`--backend=[auto, nftables, iptables or pf (default auto)]:NAME:(${BACKENDS.join(' ')})'`);
    expect(text).toMatch(/'--log-format=\[.*\]:text\|json:\(text json\)'/);
    expect(text).toMatch(/'-f\[[^'\n]*\]:policy:_files'/);
    expect(text).toMatch(/'--user=\[[^'\n]*\]:NAME:_users'/);
    expect(text).toContain("'1::command:(status completion)'");
    expect(text).toContain('_values shell bash zsh');
  });
});
