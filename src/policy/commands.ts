// Command policy: may this client command go to the server? Pure; FtpControl asks before it relays.
//
// The order, first answer wins:
//   1. an empty line: permit_empty_command;
//   2. the `command VERB` rules of the file, in file order (a rule with `match` applies only when the
//      argument matches its regular expression);
//   3. a verb the proxy does not know: permit_unknown_command;
//   4. the `command *` rules, in file order;
//   5. the profile: allow-all accepts, minimal accepts only its commands.
import { KNOWN_COMMANDS, MINIMAL_COMMANDS } from './known.js';
import type { CommandRule, Policy } from './parse.js';

export type CommandDecision =
  | { action: 'accept' }
  /** Answer `reply` locally; the command is not sent to the server. */
  | { action: 'reject'; reply: string; why: string }
  /** Send `reply` (a 421), then end the session. */
  | { action: 'drop'; reply: string; why: string };

const ACCEPT: CommandDecision = { action: 'accept' };

function fromRule(rule: CommandRule, verb: string): CommandDecision {
  const why = `command ${rule.verb}${rule.match ? ' match' : ''} on policy line ${rule.line}`;
  switch (rule.then.action) {
    case 'accept':
      return ACCEPT;
    case 'reject':
      return { action: 'reject', reply: `${rule.then.code} ${rule.then.text}\r\n`, why };
    case 'drop':
      return { action: 'drop', reply: `421 ${verb || 'Command'} not allowed by policy, closing control connection.\r\n`, why };
  }
}

function firstRule(rules: CommandRule[], verb: string, arg: string): CommandRule | undefined {
  return rules.find((r) => r.verb === verb && (!r.match || r.match.test(arg)));
}

/** `verb` upper case ('' for an empty line), `arg` the rest of the line without its line ending. */
export function decideCommand(p: Policy, verb: string, arg: string): CommandDecision {
  if (verb === '') {
    return p.permitEmptyCommand ? ACCEPT : { action: 'reject', reply: '500 Empty command not allowed by policy\r\n', why: 'permit_empty_command no' };
  }
  const exact = firstRule(p.commands, verb, arg);
  if (exact) return fromRule(exact, verb);
  if (!KNOWN_COMMANDS.has(verb)) {
    // The client's verb is not echoed: it may be anything, and the reply must stay one clean line.
    return p.permitUnknownCommand ? ACCEPT : { action: 'reject', reply: '500 Unknown command not allowed by policy\r\n', why: 'permit_unknown_command no' };
  }
  const wild = firstRule(p.commands, '*', arg);
  if (wild) return fromRule(wild, verb);
  if (p.profile === 'minimal' && !MINIMAL_COMMANDS.has(verb)) {
    return { action: 'reject', reply: `502 ${verb} not allowed by policy\r\n`, why: 'profile minimal' };
  }
  return ACCEPT;
}
