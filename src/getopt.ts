// getopt(3) as BSD implements it, for OpenBSD's exact short-option syntax: clusters ("-6Adrv"), attached
// or separate arguments ("-D7", "-D 7"), "--" ends options, the first non-option ends options, and the
// messages "unknown option -- x" / "option requires an argument -- x".

export interface GetoptResult {
  options: { opt: string; arg?: string }[];
  rest: string[];
  error?: string;
}

export function getopt(argv: string[], optstring: string): GetoptResult {
  const takesArg = new Map<string, boolean>();
  for (let i = 0; i < optstring.length; i++) {
    const c = optstring[i]!;
    if (c === ':') continue;
    takesArg.set(c, optstring[i + 1] === ':');
  }
  const options: { opt: string; arg?: string }[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a === '-' || !a.startsWith('-')) break;
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      const needs = takesArg.get(c);
      if (needs === undefined) return { options, rest: [], error: `unknown option -- ${c}` };
      if (!needs) {
        options.push({ opt: c });
        continue;
      }
      if (j + 1 < a.length) {
        options.push({ opt: c, arg: a.slice(j + 1) });
      } else if (i + 1 < argv.length) {
        options.push({ opt: c, arg: argv[++i]! });
      } else {
        return { options, rest: [], error: `option requires an argument -- ${c}` };
      }
      break;
    }
  }
  return { options, rest: argv.slice(i) };
}

/**
 * strtonum(3): a decimal integer in [min, max], else "invalid", "too small" or "too large" (the texts
 * OpenBSD puts after the option's name: "loglevel too large").
 */
export function strtonum(text: string, min: number, max: number): { value: number } | { error: string } {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)$/.exec(text); // isspace(3) in the C locale, not Unicode's \s
  if (!m) return { error: 'invalid' };
  const n = BigInt(`${m[1]}${m[2]}`);
  if (n < BigInt(min)) return { error: 'too small' };
  if (n > BigInt(max)) return { error: 'too large' };
  return { value: Number(n) };
}
