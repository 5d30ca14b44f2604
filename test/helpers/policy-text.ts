// A policy from text, for the parser's table tests: the policy, or the issues it was refused with.
import { formatIssue, parsePolicy, type Policy, PolicyError } from '../../src/policy/parse.js';

export function policy(text: string): Policy {
  const p = parsePolicy(text, 'test.policy');
  if (p instanceof PolicyError) throw new Error(p.message);
  return p;
}

export function issues(text: string): string[] {
  const p = parsePolicy(text, 'test.policy');
  if (!(p instanceof PolicyError)) throw new Error('expected an error');
  return p.issues.map(formatIssue);
}
