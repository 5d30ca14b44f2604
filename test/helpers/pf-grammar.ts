// A strict checker for the part of OpenBSD's pf.conf(5) grammar that ftp-proxy uses: the rules it loads
// into its anchors, and the statements of pf-examples/.
//
//   line       = macro | "set skip on" ifname | "anchor" string | pf-rule
//   macro      = name "=" string
//   pf-rule    = action [ "in" | "out" ] [ "log" [ "(" "all" ")" ] ] [ "quick" ]
//                [ "on" ( "rdomain" number | ifname ) ] [ af ] [ "proto" "tcp" ] hosts filteropts
//   action     = "pass" | "match" | "block" [ "drop" | "return" ]
//   hosts      = "all" | [ "from" [ addr ] [ port ] ] [ "to" [ addr ] [ port ] ]
//   addr       = "any" | "self" | "(" ( "self" | ifname ) ")" | ifname ":network" | address [ "/" bits ]
//   port       = "port" ( [ "=" | "!=" | "<" | "<=" | ">" | ">=" ] ( number | name ) | number ":" number )
//                (the last: pf.conf(5)'s inclusive range "port 2000:2004", low <= high, no spaces)
//   filteropts = { "flags" "S/SA" | "keep" "state" [ "(" "max" number ")" ] | "tag" string |
//                  "set" "queue" string | "rtable" number | "divert-to" address "port" ( number | name ) |
//                  "rdr-to" address [ "port" number ] | "nat-to" address [ "port" number ] }
//
// plus pfctl's own checks that matter here: `keep state` only on pass rules, addresses of the rule's
// family, each option at most once, rdr-to/divert-to only on "in" rules and nat-to only on "out".
import { isIPv4, isIPv6 } from '../../src/net/address.js';

export type Check = { ok: true } | { ok: false; error: string };

const SERVICES = new Set(['ftp', 'ftp-data', 'ssh', 'domain', 'www', 'http', 'https']);
const IFNAME = /^[a-z]+\d+$/;

export function checkPfRule(rule: string): Check {
  // Words, as pfctl writes them: "(all)", "(max", "1)", "(self)", "(em0)" are single tokens.
  const t = rule.trim().split(/\s+/);
  let i = 0;
  const peek = (): string | undefined => t[i];
  const take = (): string | undefined => t[i++];
  const fail = (error: string): Check => ({ ok: false, error: `${error} at token ${i} ("${t[i - 1] ?? ''}") in: ${rule}` });
  const number = (min: number, max: number): boolean => {
    const n = take();
    return n !== undefined && /^\d+$/.test(n) && Number(n) >= min && Number(n) <= max;
  };
  const portValue = (): boolean => {
    const v = take() ?? '';
    return /^\d+$/.test(v) ? Number(v) >= 1 && Number(v) <= 65535 : SERVICES.has(v);
  };

  const action = take();
  if (action !== 'pass' && action !== 'match' && action !== 'block') return fail('action must be pass, match or block');
  if (action === 'block' && (peek() === 'drop' || peek() === 'return')) take();
  let dir: string | undefined;
  if (peek() === 'in' || peek() === 'out') dir = take();
  if (peek() === 'log') {
    take();
    if (peek() === '(all)') take();
  }
  if (peek() === 'quick') take();
  if (peek() === 'on') {
    take();
    if (peek() === 'rdomain') {
      take();
      if (!number(0, 255)) return fail('rdomain number');
    } else if (!IFNAME.test(take() ?? '')) return fail('interface name');
  }
  let af: 'inet' | 'inet6' | undefined;
  if (peek() === 'inet' || peek() === 'inet6') af = take() as 'inet' | 'inet6';
  if (peek() === 'proto') {
    take();
    if (take() !== 'tcp') return fail('expected proto tcp');
  }
  const address = (a: string | undefined): boolean => {
    if (a === undefined) return false;
    const bare = a.replace(/\/\d{1,3}$/, '');
    if (isIPv4(bare)) return af !== 'inet6';
    if (isIPv6(bare)) return af !== 'inet';
    return false;
  };
  const addrSpec = (): boolean => {
    const a = peek();
    if (a === undefined || a === 'port' || a === 'to') return true; // address may be left out
    take();
    return a === 'any' || a === 'self' || /^\((self|[a-z]+\d+)\)$/.test(a) || /^[a-z]+\d+:network$/.test(a) || address(a);
  };
  const port = (): boolean => {
    if (peek() !== 'port') return true;
    take();
    if (['=', '!=', '<', '<=', '>', '>='].includes(peek() ?? '')) take();
    else {
      const range = /^(\d+):(\d+)$/.exec(peek() ?? '');
      if (range) {
        take();
        const [lo, hi] = [Number(range[1]), Number(range[2])];
        return lo >= 1 && hi <= 65535 && lo <= hi;
      }
    }
    return portValue();
  };
  if (peek() === 'all') take();
  else {
    if (peek() === 'from') {
      take();
      if (!addrSpec()) return fail('from address');
      if (!port()) return fail('from port');
    }
    if (peek() === 'to') {
      take();
      if (!addrSpec()) return fail('to address');
      if (!port()) return fail('to port');
    }
  }

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
          if (!/^\d+\)$/.test(take() ?? '')) return fail('state options');
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
      case 'divert-to':
        if (dir !== 'in') return fail('divert-to on a rule that is not "in"');
        if (!address(take())) return fail('divert-to address');
        if (take() !== 'port' || !portValue()) return fail('divert-to port');
        break;
      case 'rdr-to':
      case 'nat-to':
        if (opt === 'rdr-to' && dir !== 'in') return fail('rdr-to on a rule that is not "in"');
        if (opt === 'nat-to' && dir !== 'out') return fail('nat-to on a rule that is not "out"');
        if (!address(take())) return fail(`${opt} address`);
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

/** A pf.conf file: comments, macros (expanded as pfctl does), `set skip on`, anchors and rules. */
export function checkPfConf(text: string): { line: number; error: string }[] {
  const errors: { line: number; error: string }[] = [];
  const macros = new Map<string, string>();
  text.split('\n').forEach((raw, n) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const macro = /^([A-Za-z_]\w*)\s*=\s*"([^"]*)"$/.exec(line);
    if (macro) {
      macros.set(macro[1]!, macro[2]!);
      return;
    }
    let unknown = '';
    const expanded = line.replace(/\$(\w+)/g, (_m, name: string) => {
      const v = macros.get(name);
      if (v === undefined) unknown = name;
      return v ?? '';
    });
    if (unknown) {
      errors.push({ line: n + 1, error: `macro $${unknown} is not defined` });
      return;
    }
    if (/^set skip on [a-z]+\d*$/.test(expanded)) return;
    if (/^anchor "[\w/*.-]+"$/.test(expanded)) return;
    const r = checkPfRule(expanded);
    if (!r.ok) errors.push({ line: n + 1, error: r.error });
  });
  return errors;
}
