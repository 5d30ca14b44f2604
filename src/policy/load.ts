// Reading the policy file: at start-up (a mistake stops the daemon), on SIGUSR1 (a mistake keeps the
// policy in force), and for --check-config.
import { readFileSync } from 'node:fs';
import { tlsFileCheck } from '../tls/keys-policy.js';
import { parsePolicy, type Policy, PolicyError } from './parse.js';

/** The file could not be read at all (no line to point at). */
export class PolicyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyFileError';
  }
}

/** Read and check `file`; throws PolicyFileError or PolicyError (every mistake, file:line: key: ...). */
export function loadPolicy(file: string, read?: (f: string) => string): Policy {
  let text: string;
  try {
    text = (read ?? ((f: string): string => readFileSync(f, 'utf8')))(file);
  } catch (e) {
    throw new PolicyFileError(`cannot read policy file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // The certificate and key files the tls_* keys name are read with the same `read` when a test gives
  // one; otherwise by the TLS readers themselves, which refuse a key file every user may read, as
  // start-up does (--check-config must fail wherever start would).
  const p = parsePolicy(text, file, tlsFileCheck(read));
  if (p instanceof PolicyError) throw p;
  return p;
}

/** One line saying what a policy does, for the log and --check-config. */
export function describePolicy(p: Policy): string {
  const parts = [`profile ${p.profile}`, `${p.commands.length} command rule(s)`, `${p.replies.size} reply rule(s)`, `${p.feat.size} feat rule(s)`];
  const l = p.limits;
  if (l.line !== undefined || l.username !== undefined || l.password !== undefined) {
    parts.push(`limits ${l.line ?? '-'}/${l.username ?? '-'}/${l.password ?? '-'}`);
  }
  parts.push(`data_mode ${p.dataMode}`);
  const masq = [...Object.values(p.masqueradeClient), ...Object.values(p.masqueradeServer)];
  if (masq.length) parts.push(`masquerade ${masq.join(', ')}`);
  const files = (['certificate', 'caCertificate', 'serverCa'] as const).filter((k) => p.tls[k]);
  const t = p.tls;
  if (t.client !== 'none' || t.server !== 'none' || files.length) {
    const range = t.client === 'passthrough' ? [...(t.passthroughPorts ? [`${t.passthroughPorts.low}-${t.passthroughPorts.high}`] : []), ...[...t.passthroughPortsByServer].map(([a, r]) => `${r.low}-${r.high} for ${a}`)] : [];
    parts.push(`tls_client ${t.client}, tls_server ${t.server}${range.length ? `, passthrough ports ${range.join(', ')}` : ''}`);
    if (files.length) parts.push(`TLS files loaded: ${files.map((k) => ({ certificate: 'certificate and key', caCertificate: 'CA and key', serverCa: 'server CAs' })[k]).join(', ')}`);
  }
  return parts.join(', ');
}
