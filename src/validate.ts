// The daemon's whole start-up validation, in one place: Daemon.start() stops at the first problem (as
// OpenBSD's err(3) does), `--check-config` prints every one and exits 1 where start would fail. Nothing
// here binds, changes the firewall or needs privileges.
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { checkLinuxRuleOptions } from './choose-backend.js';
import { checkNumeric, type Config } from './config.js';
import { gaiText } from './errno-text.js';
import { canonical, familyOf } from './net/address.js';
import type { Endpoint } from './net/original-dst.js';
import { resolvePort } from './net/services.js';
import { describePolicy, loadPolicy } from './policy/load.js';
import { type Policy, PolicyError } from './policy/parse.js';
import { lookupUser } from './privileges.js';

export interface Validated {
  policy?: Policy;
  /** -R: the server's address (resolved) and port. */
  fixedServer?: Endpoint;
  listenPort: number;
}

export interface Validation {
  ok: Validated | null;
  /** Every problem, each as start-up would print it after "ftp-proxy: ". */
  problems: string[];
}

export interface ValidateOptions {
  /** Resolve -R names (tests give their own). */
  resolve?: (name: string, family: 4 | 6) => Promise<string>;
  readFile?: (f: string) => string;
  platform?: string;
}

export async function validateConfig(c: Config, o: ValidateOptions = {}): Promise<Validation> {
  const problems: string[] = [];
  const read = o.readFile ?? ((f: string) => readFileSync(f, 'utf8'));
  const out: Validated = { listenPort: 0 };

  if (c.policyFile !== undefined) {
    try {
      // The policy's own reader only when a test gives one: the TLS key files are read with their mode check.
      out.policy = loadPolicy(c.policyFile, o.readFile);
    } catch (e) {
      problems.push(e instanceof PolicyError ? `${e.message}\n${c.policyFile}: ${e.issues.length} error(s), not started` : (e as Error).message);
    }
  }

  for (const a of c.sourceAddresses) {
    const bad = checkNumeric('getaddrinfo: fixed proxy address', a, c.ipv6);
    if (bad) problems.push(bad);
  }

  if (c.fixedServer !== undefined) {
    const port = resolvePort(c.fixedServerPort);
    if (port === null) problems.push(`getaddrinfo: fixed server port ${c.fixedServerPort}: unknown service`);
    // A numeric address keeps its family; a name resolves in the mode's family, as on OpenBSD.
    const family = familyOf(c.fixedServer) ?? (c.ipv6 ? 6 : 4);
    if (c.ipv6 && family !== 6) problems.push(`getaddrinfo: fixed server address ${c.fixedServer}: not an IPv6 address (-6)`);
    else {
      try {
        const address = o.resolve ? await o.resolve(c.fixedServer, family) : (await lookup(c.fixedServer, { family })).address;
        if (port !== null) out.fixedServer = { address: canonical(address), port };
      } catch (e) {
        problems.push(`getaddrinfo: fixed server address ${c.fixedServer}: ${gaiText(e)}`);
      }
    }
  }

  const port = resolvePort(c.listenPort);
  if (port === null) problems.push(`getaddrinfo listen address/port: ${c.listenPort}: unknown service`);
  else out.listenPort = port;
  for (const a of c.listenAddresses) {
    const bad = checkNumeric('getaddrinfo listen address/port:', a, c.ipv6);
    if (bad) problems.push(bad);
  }

  // -T/-q on Linux are a conntrack mark and a tc class (pf's names are checked with the flags).
  const pf = c.backend === 'pf' || (c.backend === 'auto' && (o.platform ?? process.platform) === 'openbsd');
  if (!pf) {
    try {
      checkLinuxRuleOptions(c);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }

  if (c.user !== undefined) {
    let passwd = '';
    try {
      passwd = read('/etc/passwd');
    } catch {
      // no passwd file: the user is unknown
    }
    const pw = lookupUser(passwd, c.user);
    if (!pw) problems.push(`unknown user ${c.user}`);
    else if (pw.uid === 0) problems.push(`--user ${c.user}: that is root`);
  }

  return { ok: problems.length ? null : out, problems };
}

/** --check-config: what to print and the exit status. */
export async function checkWholeConfig(c: Config, o: ValidateOptions = {}): Promise<{ exit: number; stdout?: string; stderr?: string }> {
  const v = await validateConfig(c, o);
  if (!v.ok) return { exit: 1, stderr: v.problems.map((p) => `ftp-proxy: ${p}\n`).join('') };
  const policy = v.ok.policy ? `${c.policyFile}: OK (${describePolicy(v.ok.policy)})` : 'no policy file (-f): OpenBSD behaviour';
  return { exit: 0, stdout: `ftp-proxy: flags OK; ${policy}\n` };
}
