// Policy regular expressions run in linear time (RE2): a hostile argument cannot stall the daemon, and
// a pattern RE2 cannot run (backreference, lookaround) is refused at load with file:line (issue 11, item 8).
import { afterEach, describe, expect, it } from 'vitest';
import { decideCommand } from '../../src/policy/commands.js';
import { parsePolicy, type Policy, PolicyError } from '../../src/policy/parse.js';
import { daemonRig, type DaemonRig } from '../helpers/daemon-rig.js';

const HOSTILE_RULE = 'command RETR match /^([\\w.-]+\\/?)*$/ accept\ncommand RETR reject 550 "no"\n';

function policy(t: string): Policy {
  const p = parsePolicy(t, 'x.policy');
  if (p instanceof PolicyError) throw new Error(p.message);
  return p;
}

describe('loading', () => {
  it.each([
    ['command RETR match /(a)\\1/ accept', 'backreference'],
    ['command RETR match /^(?=x)/ accept', 'lookahead'],
    ['command RETR match /(?<!\\.)x/ accept', 'lookbehind'],
    ['command STOR match /(?<n>a)\\k<n>/i reject', 'named backreference'],
  ])('%j (%s) is refused with file:line', (line) => {
    const p = parsePolicy(`# regexes\n${line}\n`, 'x.policy');
    expect(p).toBeInstanceOf(PolicyError);
    expect((p as PolicyError).message).toMatch(/^x\.policy:2: command: regular expression \/.*\/ not supported: .*\(backreferences and lookaround cannot be matched in linear time\)$/);
  });

  it('a JavaScript syntax error keeps its own message', () => {
    const p = parsePolicy('command RETR match /(/ accept\n', 'x.policy');
    expect((p as PolicyError).message).toMatch(/^x\.policy:1: command: bad regular expression: /);
  });

  it('ordinary patterns still work, the i flag too', () => {
    const p = policy('command RETR match /^[\\w.-]+$/ accept\ncommand RETR reject\ncommand CWD match /^PUB/i reject\n');
    expect(decideCommand(p, 'RETR', 'file.txt').action).toBe('accept');
    expect(decideCommand(p, 'RETR', '../etc').action).toBe('reject');
    expect(decideCommand(p, 'CWD', 'pub').action).toBe('reject');
    expect(decideCommand(p, 'CWD', 'home').action).toBe('accept');
  });
});

describe('matching time', () => {
  it('a 40-byte argument against /^([\\w.-]+\\/?)*$/ is decided at once', () => {
    const p = policy(HOSTILE_RULE);
    const t = performance.now();
    expect(decideCommand(p, 'RETR', `${'a'.repeat(39)}!`).action).toBe('reject');
    expect(performance.now() - t).toBeLessThan(50);
  });
});

describe('in the daemon', () => {
  let rig: DaemonRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  it("another session's NOOP round trip stays under 50 ms while a hostile argument is matched", async () => {
    rig = await daemonRig([], { policy: HOSTILE_RULE });
    const victim = await rig.loggedIn();
    const attacker = await rig.loggedIn('127.0.0.6');
    // A backtracking engine takes seconds over 25 bytes (and ages over 40).
    attacker.send(`RETR ${'a'.repeat(24)}!\r\n`);
    const t = performance.now();
    victim.send('NOOP\r\n');
    expect(await victim.next()).toBe('200 NOOP ok\r\n');
    expect(performance.now() - t).toBeLessThan(50);
    expect(await attacker.next()).toBe('550 no\r\n');
  });
});
