// A strict checker for the part of OpenBSD's pf.conf(5) grammar that ftp-proxy's anchor rules use:
//
//   pf-rule    = action [ "in" | "out" ] [ "log" [ "(" "all" ")" ] ] [ "quick" ]
//                [ "on" "rdomain" number ] af "proto" "tcp" hosts filteropts
//   action     = "pass" | "match"
//   af         = "inet" | "inet6"
//   hosts      = "from" address [ port ] "to" address [ port ]
//   port       = "port" [ "=" ] number
//   filteropts = { "flags" "S/SA" | ( "keep" "state" [ "(" "max" number ")" ] ) | "tag" string |
//                  "set" "queue" string | "rtable" number | "rdr-to" address [ "port" number ] |
//                  "nat-to" address [ "port" number ] }
//
// plus pfctl's own checks that matter here: `keep state` only on pass rules, addresses of the rule's
// family, ports 1..65535, each option at most once, rdr-to only on "in" rules and nat-to only on "out".
import { isIPv4, isIPv6 } from '../../src/net/address.js';

export type Check = { ok: true } | { ok: false; error: string };

export function checkPfRule(rule: string): Check {
  const t = rule.trim().split(/\s+/);
  let i = 0;
  const peek = (): string | undefined => t[i];
  const take = (): string | undefined => t[i++];
  const fail = (error: string): Check => ({ ok: false, error: `${error} at token ${i} ("${t[i] ?? 'end'}") in: ${rule}` });
  const number = (min: number, max: number): boolean => {
    const n = take();
    return n !== undefined && /^\d+$/.test(n) && Number(n) >= min && Number(n) <= max;
  };

  const action = take();
  if (action !== 'pass' && action !== 'match') return fail('action must be pass or match');
  let dir: string | undefined;
  if (peek() === 'in' || peek() === 'out') dir = take();
  if (peek() === 'log') {
    take();
    if (peek() === '(all)') take();
    else if (peek() === '(') {
      take();
      if (take() !== 'all' || take() !== ')') return fail('log options');
    }
  }
  if (peek() === 'quick') take();
  if (peek() === 'on') {
    take();
    if (take() !== 'rdomain') return fail('expected rdomain');
    if (!number(0, 255)) return fail('rdomain number');
  }
  const af = take();
  if (af !== 'inet' && af !== 'inet6') return fail('address family');
  if (take() !== 'proto' || take() !== 'tcp') return fail('expected proto tcp');
  const address = (): boolean => {
    const a = take() ?? '';
    return af === 'inet' ? isIPv4(a) : isIPv6(a);
  };
  const port = (): boolean => {
    if (peek() !== 'port') return true;
    take();
    if (peek() === '=') take();
    return number(1, 65535);
  };
  if (take() !== 'from' || !address()) return fail('from address');
  if (!port()) return fail('from port');
  if (take() !== 'to' || !address()) return fail('to address');
  if (!port()) return fail('to port');

  const seen = new Set<string>();
  while (i < t.length) {
    const opt = take()!;
    if (seen.has(opt)) return fail(`"${opt}" given twice`);
    seen.add(opt);
    switch (opt) {
      case 'flags':
        if (take() !== 'S/SA') return fail('flags');
        break;
      case 'keep':
        if (take() !== 'state') return fail('keep state');
        if (action !== 'pass') return fail('keep state is great, but only for pass rules');
        if (peek() === '(max') {
          take();
          const n = take() ?? '';
          if (!/^\d+\)$/.test(n)) return fail('state options');
        }
        break;
      case 'tag':
        if (!/^[\w.-]{1,63}$/.test(take() ?? '')) return fail('tag name');
        break;
      case 'set':
        if (take() !== 'queue' || !/^[\w.-]{1,63}$/.test(take() ?? '')) return fail('set queue');
        break;
      case 'rtable':
        if (!number(0, 255)) return fail('rtable number');
        break;
      case 'rdr-to':
      case 'nat-to':
        if (opt === 'rdr-to' && dir !== 'in') return fail('rdr-to on a rule that is not "in"');
        if (opt === 'nat-to' && dir !== 'out') return fail('nat-to on a rule that is not "out"');
        if (!address()) return fail(`${opt} address`);
        if (peek() === 'port') {
          take();
          if (!number(1, 65535)) return fail(`${opt} port`);
        }
        break;
      default:
        return fail(`unknown option "${opt}"`);
    }
  }
  return { ok: true };
}
