// Reply policy: what the client gets for a server reply, keyed by the command it answers and the code,
// with Zorp's precedence: the exact code (PWD200), then shorter prefixes (PWD20, PWD2), the command alone
// (PWD), then the same for the wildcard command (*200, *20, *2, *). Pure.
import type { Policy, ReplyAction } from './parse.js';

export interface ReplyDecision {
  then: ReplyAction;
  /** The key that matched and its line, for the log; absent when no rule matched (accept). */
  key?: string;
  line?: number;
}

const ACCEPT: ReplyDecision = { then: { action: 'accept' } };

/** The keys tried, in order, for a reply `code` to `verb` ('' for the greeting: only the wildcard). */
export function replyKeys(verb: string, code: string): string[] {
  const keys: string[] = [];
  for (const v of verb ? [verb, '*'] : ['*']) for (let n = 3; n >= 0; n--) keys.push(v + code.slice(0, n));
  return keys;
}

export function decideReply(p: Policy, verb: string, code: string): ReplyDecision {
  if (p.replies.size === 0) return ACCEPT;
  for (const key of replyKeys(verb, code)) {
    const r = p.replies.get(key);
    if (r) return { then: r.then, key, line: r.line };
  }
  return ACCEPT;
}
