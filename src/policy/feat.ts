// FEAT policy: which lines of a FEAT reply reach the client. Each feature line is decided on its own, so
// the reply streams through; features to insert go in before its last line. Pure.
//
// A rule names a feature as the server lists it, case-insensitively: "MLST" matches " MLST size*;type*;",
// "AUTH TLS" matches " AUTH TLS" only, "AUTH" matches every AUTH line. `*` covers the features no rule
// names. AUTH, PBSZ and PROT are always dropped: the proxy refuses AUTH (it must read the control
// channel), and a client that sees them advertised would try them first.
import { type Policy, TLS_FEATURES } from './parse.js';

/** The feature a FEAT line lists (" MDTM\r\n" -> "MDTM"), or null for a line that lists none. */
export function featureOf(line: string): string | null {
  if (!line.startsWith(' ')) return null;
  const f = line.replace(/\r?\n$/, '').trim();
  return f || null;
}

function matches(rule: string, feature: string): boolean {
  return feature === rule || feature.startsWith(`${rule} `) || feature.startsWith(`${rule};`);
}

/**
 * Whether a listed feature (as featureOf returns it) goes to the client. `serverTls`: the server answers
 * AUTH itself (tls_client passthrough), so its AUTH, PBSZ and PROT lines stay; otherwise they go (the
 * proxy refuses AUTH, or lists its own).
 */
export function keepFeature(p: Policy, feature: string, serverTls = false): boolean {
  const upper = feature.toUpperCase();
  // tls_client decides these: none or the proxy's own (dropped here), or the server's (passthrough), which
  // only a rule naming them may still drop ("*" does not reach them: pass-through would silently stop).
  if ([...TLS_FEATURES, 'CCC'].some((t) => matches(t, upper))) return serverTls && !droppedByName(p, upper);
  // The most specific rule wins: "AUTH TLS" before "AUTH".
  let best: { len: number; action: string } | null = null;
  for (const [name, rule] of p.feat) {
    if (name !== '*' && matches(name, upper) && (!best || name.length > best.len)) best = { len: name.length, action: rule.action };
  }
  if (best) return best.action !== 'drop';
  return p.feat.get('*')?.action !== 'drop';
}

/** A rule that names this feature (not `*`) drops it. */
export function droppedByName(p: Policy, upperFeature: string): boolean {
  let best: { len: number; action: string } | null = null;
  for (const [name, rule] of p.feat) {
    if (name !== '*' && matches(name, upperFeature) && (!best || name.length > best.len)) best = { len: name.length, action: rule.action };
  }
  return best?.action === 'drop';
}

/** Features to add that the server did not list (`seen`: what it listed, upper case). */
export function featuresToInsert(p: Policy, seen: Set<string>): string[] {
  const out: string[] = [];
  for (const [name, rule] of p.feat) {
    if (rule.action !== 'insert') continue;
    if ([...seen].some((f) => matches(name, f))) continue;
    out.push(rule.text);
  }
  return out;
}
