// The policy's FTPS keys (tls_*): their values, and the checks between them. Pure; the certificate and key
// files are read by src/tls/keys-policy.ts, given to parsePolicy by the loader.
import { isIP } from 'node:net';

export const TLS_KEYS = [
  'tls_client',
  'tls_server',
  'tls_certificate',
  'tls_key',
  'tls_ca_certificate',
  'tls_ca_key',
  'tls_server_verify',
  'tls_server_ca',
  'tls_passthrough_ports',
] as const;
export type TlsKey = (typeof TLS_KEYS)[number];
/** tls_passthrough_ports may be given once per server address (and once without one). */
export const TLS_ONCE: readonly TlsKey[] = TLS_KEYS.filter((k) => k !== 'tls_passthrough_ports');

export type TlsClientMode = 'none' | 'accept' | 'require' | 'passthrough';
export type TlsServerMode = 'none' | 'forward' | 'require';

export interface PortRange {
  low: number;
  high: number;
  /** Where it was written. */
  line: number;
}

export interface TlsPolicy {
  client: TlsClientMode;
  server: TlsServerMode;
  /** What the proxy presents to clients (absolute paths). */
  certificate?: string;
  key?: string;
  /** The CA that signs the certificates minted per server in forward mode. */
  caCertificate?: string;
  caKey?: string;
  /** Check the server's certificate (default yes), against the system CAs or serverCa. */
  serverVerify: boolean;
  serverCa?: string;
  /** tls_client passthrough: the server's passive port range, for any server... */
  passthroughPorts?: PortRange;
  /** ...or for one server address (IPv6 compressed, lower case). */
  passthroughPortsByServer: Map<string, PortRange>;
  /** The line of each key given, for the messages of later checks (the files). */
  lines: Partial<Record<TlsKey, number>>;
}

export const defaultTls = (): TlsPolicy => ({ client: 'none', server: 'none', serverVerify: true, passthroughPortsByServer: new Map(), lines: {} });

/** A problem found after parsing, on the line of `key`. */
export interface TlsIssue {
  key: TlsKey;
  message: string;
}

/** Reads the files the policy names; each problem names the file and the reason. */
export type TlsFileCheck = (tls: TlsPolicy) => TlsIssue[];

type Arg = { kind: 'word' | 'string' | 'regex'; text: string };

const FILE_KEYS = { tls_certificate: 'certificate', tls_key: 'key', tls_ca_certificate: 'caCertificate', tls_ca_key: 'caKey', tls_server_ca: 'serverCa' } as const;

/** One tls_* line (its arguments after the key) into `tls`; a mistake goes to fail(). */
export function parseTlsKey(key: TlsKey, args: readonly Arg[], line: number, tls: TlsPolicy, fail: (m: string) => void): void {
  const one = (what: string): Arg | null => {
    if (args.length !== 1) {
      fail(`expected ${what}`);
      return null;
    }
    return args[0]!;
  };
  const choice = <T extends string>(values: readonly T[]): T | null => {
    const what = `${values.slice(0, -1).join(', ')} or ${values.at(-1)}`;
    const a = one(what);
    if (!a) return null;
    if (a.kind !== 'word' || !(values as readonly string[]).includes(a.text)) {
      fail(`expected ${what}, not "${a.text}"`);
      return null;
    }
    return a.text as T;
  };
  switch (key) {
    case 'tls_client': {
      const v = choice(['none', 'accept', 'require', 'passthrough'] as const);
      if (v) tls.client = v;
      break;
    }
    case 'tls_server': {
      const v = choice(['none', 'forward', 'require'] as const);
      if (v) tls.server = v;
      break;
    }
    case 'tls_server_verify': {
      const v = choice(['yes', 'no'] as const);
      if (v) tls.serverVerify = v === 'yes';
      break;
    }
    case 'tls_certificate':
    case 'tls_key':
    case 'tls_ca_certificate':
    case 'tls_ca_key':
    case 'tls_server_ca': {
      const a = one('a file name in double quotes ("/etc/ftp-proxy/...")');
      if (!a) break;
      if (a.kind !== 'string') {
        // An unquoted /path is read as a regular expression; say so rather than "bad regex".
        fail(`expected a file name in double quotes ("/etc/ftp-proxy/..."), not ${a.kind === 'regex' ? 'a regular expression' : `"${a.text}"`}`);
        break;
      }
      if (!a.text.startsWith('/') || /[\0\r\n]/.test(a.text)) {
        fail(`expected an absolute file name (the daemon does not run in the policy's directory), not "${a.text}"`);
        break;
      }
      tls[FILE_KEYS[key]] = a.text;
      break;
    }
    case 'tls_passthrough_ports': {
      const usage = 'expected LOW-HIGH [SERVER-ADDRESS] (the server\'s passive port range, 1024-65535)';
      if (args.length < 1 || args.length > 2 || args.some((x) => x.kind !== 'word')) {
        fail(usage);
        return;
      }
      const m = /^(\d{1,5})-(\d{1,5})$/.exec(args[0]!.text);
      const low = Number(m?.[1]);
      const high = Number(m?.[2]);
      if (!m || low < 1024 || high > 65535 || low > high) {
        fail(`${usage}, not "${args[0]!.text}"`);
        return;
      }
      const given = args[1]?.text;
      if (given !== undefined && !isIP(given)) {
        fail(`expected a numeric server address after the range, not "${given}"`);
        return;
      }
      // one spelling per address: IPv6 compressed, lower case
      const addr = given === undefined ? undefined : isIP(given) === 6 ? new URL(`http://[${given}]`).hostname.slice(1, -1) : given;
      const before = addr === undefined ? tls.passthroughPorts : tls.passthroughPortsByServer.get(addr);
      if (before) {
        fail(`a range for ${addr ?? 'every server'} is already set on line ${before.line}`);
        return;
      }
      if (addr === undefined) tls.passthroughPorts = { low, high, line };
      else tls.passthroughPortsByServer.set(addr, { low, high, line });
      // the first line of the key, for the messages of checkTls
      tls.lines.tls_passthrough_ports ??= line;
      return;
    }
  }
  tls.lines[key] = line;
}

/**
 * The checks between keys, and the files (through `files`). Each issue is on the line of the key it names.
 */
export function checkTls(tls: TlsPolicy, files?: TlsFileCheck): TlsIssue[] {
  const out: TlsIssue[] = [];
  const has = (k: TlsKey): boolean => tls.lines[k] !== undefined;
  const pair = (a: TlsKey, b: TlsKey): void => {
    if (has(a) && !has(b)) out.push({ key: a, message: `needs ${b} as well` });
    if (has(b) && !has(a)) out.push({ key: b, message: `needs ${a} as well` });
  };
  pair('tls_certificate', 'tls_key');
  pair('tls_ca_certificate', 'tls_ca_key');
  if ((tls.client === 'accept' || tls.client === 'require') && !has('tls_certificate') && !has('tls_ca_certificate')) {
    out.push({
      key: 'tls_client',
      message: `${tls.client} needs a certificate for clients: tls_certificate and tls_key, or (forward mode) tls_ca_certificate and tls_ca_key`,
    });
  }
  if ((tls.client === 'accept' || tls.client === 'require') && tls.server === 'none' && has('tls_ca_certificate') && !has('tls_certificate')) {
    out.push({
      key: 'tls_ca_certificate',
      message: "a minted certificate mirrors the server's, which tls_server none never sees: set tls_server forward or require, or give tls_certificate and tls_key",
    });
  }
  if (tls.client === 'passthrough') {
    if (tls.server !== 'none' && has('tls_server')) out.push({ key: 'tls_server', message: `must be none with tls_client passthrough (the proxy does not take part in the TLS it passes through), not ${tls.server}` });
    if (!has('tls_passthrough_ports')) out.push({ key: 'tls_client', message: "passthrough needs tls_passthrough_ports LOW-HIGH (the server's passive port range)" });
  } else if (has('tls_passthrough_ports')) {
    out.push({ key: 'tls_passthrough_ports', message: 'is only used with tls_client passthrough' });
  }
  if (!tls.serverVerify && has('tls_server_ca')) out.push({ key: 'tls_server_ca', message: 'is not used with tls_server_verify no' });
  if (files) out.push(...files(tls));
  return out;
}
