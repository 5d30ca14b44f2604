// The FTPS end-to-end lab: the namespace lab of test/e2e/lab.ts with the TLS servers of tls-lab.ts, the
// real daemon with a policy file, and the real clients (curl, lftp, Python's ftplib) restricted to one
// TLS version, one data-connection command and one PROT level, each download checked by sha256.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { type Backend, Lab, type Mode, type ProxyProcess, requireLab, ROOT } from '../e2e/lab.js';
import { type FtpsServer, type LabPki, makeLabPki, requireTlsLab, startVsftpd, type VsftpdOptions } from './tls-lab.js';

export const PY_CLIENT = `${ROOT}test/helpers/ftps-client.py`;
export const RAW_FTPS = `${ROOT}test/helpers/ftps-raw.mjs`;
export const PASSTHROUGH_POLICY = `${ROOT}policy-examples/ftps-passthrough.policy`;

export type Client = 'curl' | 'lftp' | 'python';
export type DataMode = 'pasv' | 'epsv' | 'port' | 'eprt';
export type Prot = 'P' | 'C';
export type TlsVersion = '1.2' | '1.3';

/** One client session: what to fetch, how, from where. */
export interface Fetch {
  client: Client;
  host: string;
  port?: number;
  /** Implicit FTPS (ftps://, port 990 by default). */
  implicit?: boolean;
  /** Plain FTP: no AUTH at all (a plain client through tls_server require). */
  plain?: boolean;
  mode: DataMode;
  prot?: Prot;
  version?: TlsVersion;
  user?: string;
  password?: string;
  file: string;
  /** The CA the client verifies the proxy's certificate against. */
  ca: string;
  /** curl only: --ftp-ssl-ccc after login (with PROT C: the control channel goes back to plain text); the
   * --ftp-ssl-ccc-mode: active (curl sends close_notify first) or passive (it waits for the other side's). */
  ccc?: 'active' | 'passive';
  timeoutMs?: number;
  /** Python: offer the control session on data connections ("session"), or not, as ftplib ships ("stock"). */
  reuse?: 'stock' | 'session';
  /** The namespace the client runs in (default the client's). */
  ns?: 'cli' | 'fw';
}

export interface Fetched {
  ok: boolean;
  sha256: string;
  /** What the client said (stderr, curl -v trace, Python's JSON). */
  output: string;
  /** Python: the TLS version the control connection negotiated. */
  version?: string;
}

const bracket = (h: string): string => (h.includes(':') ? `[${h}]` : h);

/** Fail (never skip) with what to install when a tool of these tests is missing. */
export async function requireFtpsTools(): Promise<void> {
  const missing: string[] = [];
  for (const [tool, pkg] of [
    ['conntrack', 'conntrack'],
    ['unshare', 'util-linux'],
    ['python3', 'python3'],
    ['lftp', 'lftp'],
    ['curl', 'curl'],
  ]) {
    if ((await execa('sh', ['-c', `command -v ${tool}`], { reject: false })).exitCode !== 0) missing.push(pkg!);
  }
  if (missing.length) throw new Error(`FTPS e2e tests cannot run: apt-get install ${missing.join(' ')} (scripts/deps.sh)`);
}

/** Fail (never skip) with what to install when the lab, a tool of these tests or a TLS lab piece is missing. */
export async function requireFtpsLab(tls: Parameters<typeof requireTlsLab>[0]): Promise<void> {
  await requireLab();
  await requireFtpsTools();
  await requireTlsLab(tls);
}

/** The lab of an FTPS e2e file, as ftpsLabUp() leaves it. */
export interface FtpsLab {
  lab: Lab;
  /** The servers' CA (and the configured certificates'). */
  pki: LabPki;
  /** The CA the proxy mints from, which the clients trust: a client that accepts the proxy's certificate saw a minted one. */
  mint: LabPki;
  /** sha256 of the served files, by name. */
  sums: Record<string, string>;
  /** The servers down() stops. */
  servers: FtpsServer[];
  /** vsftpd on the lab's data directory (PROT C allowed), in `dir` under the run directory, port 21 by default. */
  vsftpd(o: Omit<VsftpdOptions, 'ns' | 'root' | 'port'> & { port?: number }): Promise<FtpsServer>;
  down(): Promise<void>;
}

/**
 * The namespace lab for FTPS: the 1 MiB file as well, the lab's plain proftpd on its own address only
 * (SocketBindTight, plus the directives `ftpd` gives), `addresses` added to the server, the shipped `ruleset`
 * (lab-adapted by labRuleset, closed), conntrack counting, the lab CA and the minting CA.
 */
export async function ftpsLabUp(mode: Mode, o: { ruleset: string; implicit?: boolean; addresses: string[]; ftpd?: (lab: Lab) => string[]; iptables?: string }): Promise<FtpsLab> {
  const lab = await Lab.up(mode);
  const servers: FtpsServer[] = [];
  const down = async (): Promise<void> => {
    for (const s of servers) await s.stop().catch(() => undefined);
    await lab.down();
  };
  try {
    if (o.iptables) lab.iptables = o.iptables;
    const sums = { 'test1M.bin': addMiB(lab), 'test20M.bin': lab.sha256('test20M.bin'), 'small.txt': lab.sha256('small.txt') };
    await lab.sh('ftpd-restart', 'SocketBindTight on', ...(o.ftpd?.(lab) ?? []));
    for (const a of o.addresses) await serverAddress(lab, a);
    await lab.loadRuleset(labRuleset(lab, o.ruleset, { implicit: o.implicit ?? false, closed: true }));
    await conntrackReset(lab);
    const pki = await makeLabPki(`${lab.runDir}/pki`);
    const mint = await makeLabPki(`${lab.runDir}/pki-mint`, 'ftp-proxy test proxy CA');
    const vsftpd = async (v: Omit<VsftpdOptions, 'ns' | 'root' | 'port'> & { port?: number }): Promise<FtpsServer> => {
      const s = await startVsftpd({ ns: lab.srv, root: `${lab.runDir}/data`, forceDataSsl: false, port: 21, ...v, dir: `${lab.runDir}/${v.dir}` });
      servers.push(s);
      return s;
    };
    return { lab, pki, mint, sums, servers, vsftpd, down };
  } catch (e) {
    await down();
    throw e;
  }
}

/** The forward policy of these tests: certificates minted from the proxy's CA, servers checked against the lab CA. */
export const mintPolicy = (f: Pick<FtpsLab, 'mint' | 'pki'>, client: 'accept' | 'require' = 'accept'): string[] => [
  `tls_client ${client}`,
  'tls_server forward',
  `tls_ca_certificate "${f.mint.caCert}"`,
  `tls_ca_key "${f.mint.caKey}"`,
  `tls_server_ca "${f.pki.caCert}"`,
];

/** The shipped passthrough policy's tls_passthrough_ports: the passive range its server must use. */
export function passthroughRange(): [number, number] {
  const m = /^tls_passthrough_ports (\d+)-(\d+)$/m.exec(readFileSync(PASSTHROUGH_POLICY, 'utf8'));
  if (!m) throw new Error(`${PASSTHROUGH_POLICY}: no tls_passthrough_ports LOW-HIGH line`);
  return [Number(m[1]), Number(m[2])];
}

/** A TCP connection from the client to host:port: "refused" (it reached the server, nothing listens) or "dropped". */
export async function probe(lab: Lab, host: string, port: number): Promise<string> {
  const r = await lab.exec('cli', ['bash', '-c', `timeout 2 bash -c 'exec 3<>/dev/tcp/${host}/${port}' 2>&1; echo rc=$?`], { reject: false });
  return /Connection refused/.test(r.stdout) ? 'refused' : /rc=124/.test(r.stdout) ? 'dropped' : r.stdout;
}

/** What ftps-client.py prints last. */
export interface PyOut {
  ok: boolean;
  error?: string;
  version?: string;
  commands?: string[];
  transfers: { sha256: string; reply: string }[];
}

/** ftps-client.py with options `o` in the client namespace: its last JSON line (`{}` if none) and all it printed. */
export async function pyClient(lab: Lab, o: Record<string, unknown>): Promise<{ out: PyOut; stdout: string }> {
  const p = await lab.exec('cli', ['python3', PY_CLIENT, JSON.stringify(o)], { reject: false });
  return { out: JSON.parse(p.stdout.trim().split('\n').at(-1) ?? '{}') as PyOut, stdout: p.stdout };
}

/**
 * Python's ftplib end to end TLS with the server (it verifies the server's own certificate, and offers
 * its control session on the data connection itself), 1 MiB by `mode` PROT P, the session held 4 s
 * after login: `during` runs while it holds (the passthrough range is open then). The download must
 * succeed with sha256 `sum`; the client's JSON is returned.
 */
export async function heldPassthrough(lab: Lab, proxy: ProxyProcess, o: { host: string; ca: string; mode: DataMode; version: TlsVersion; sum: string }, during: () => Promise<void>): Promise<PyOut> {
  const opts = { host: o.host, cafile: o.ca, mode: o.mode, prot: 'P', version: o.version, reuse: 'session', files: ['test1M.bin'], hold: 4 };
  const c = lab.spawn('cli', ['python3', PY_CLIENT, JSON.stringify(opts)]);
  try {
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    for (let i = 0; i < 200 && !out.includes('"ready"'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out, logTail(proxy)).toContain('"ready"');
    await during();
    await exited;
    const last = JSON.parse(out.trim().split('\n').at(-1)!) as PyOut;
    expect(last.ok, `${out}\n${logTail(proxy)}`).toBe(true);
    expect(last.transfers[0]!.sha256).toBe(o.sum);
    return last;
  } finally {
    // a failed check leaves it holding: it is the test's, so end it here
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

/** Download `f.file` with a real client in the lab's client namespace. */
export async function fetchFile(lab: Lab, f: Fetch): Promise<Fetched> {
  const dl = `${lab.runDir}/dl`;
  mkdirSync(dl, { recursive: true });
  const out = `${dl}/${f.client}-${f.mode}-${Date.now()}-${f.file}`;
  const user = f.user ?? 'anonymous';
  const password = f.password ?? 'lab@';
  const prot = f.prot ?? 'P';
  const timeout = f.timeoutMs ?? 90_000;
  const port = f.port ?? (f.implicit ? 990 : 21);
  let r: { exitCode?: number; stdout: string; stderr: string };
  if (f.client === 'python') {
    if (f.implicit) throw new Error('ftplib has no implicit FTPS: use curl or lftp');
    const opts = { host: f.host, port, cafile: f.ca, version: f.version ?? 'any', user, password, mode: f.mode, prot, files: [f.file], tls: !f.plain, reuse: f.reuse ?? 'stock' };
    r = await lab.exec(f.ns ?? 'cli', ['python3', PY_CLIENT, JSON.stringify(opts)], { reject: false, timeout });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    let o: { ok?: boolean; version?: string; error?: string; transfers?: { sha256: string }[] };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      return { ok: false, sha256: '', output: `python: ${r.stdout} ${r.stderr}` };
    }
    return { ok: o.ok === true && !o.error, sha256: o.transfers?.[0]?.sha256 ?? '', output: line, ...(o.version ? { version: o.version } : {}) };
  }
  if (f.client === 'curl') {
    const modeArgs = { pasv: ['--disable-epsv'], epsv: [], port: ['-P', '-', '--disable-eprt'], eprt: ['-P', '-'] }[f.mode];
    const versionArgs = f.version === '1.2' ? ['--tlsv1.2', '--tls-max', '1.2'] : f.version === '1.3' ? ['--tlsv1.3'] : [];
    // --ssl-reqd: TLS for control and data (PROT P); --ftp-ssl-control: control only (PROT C)
    const tlsArgs = f.plain || f.implicit ? [] : [prot === 'P' ? '--ssl-reqd' : '--ftp-ssl-control'];
    const scheme = f.implicit ? 'ftps' : 'ftp';
    const url = `${scheme}://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${bracket(f.host)}:${port}/${f.file}`;
    r = await lab.exec(
      f.ns ?? 'cli',
      ['curl', '-sS', '-v', '--cacert', f.ca, '--connect-timeout', '10', '--max-time', String(Math.round(timeout / 1000) - 5), ...tlsArgs, ...versionArgs, ...modeArgs, ...(f.ccc ? ['--ftp-ssl-ccc', '--ftp-ssl-ccc-mode', f.ccc] : []), '-o', out, url],
      { reject: false, timeout },
    );
  } else {
    const modeSet = {
      pasv: 'set ftp:passive-mode on; set ftp:prefer-epsv off',
      epsv: 'set ftp:passive-mode on; set ftp:prefer-epsv on',
      port: 'set ftp:passive-mode off',
      // lftp sends EPRT only on IPv6 (PORT on IPv4)
      eprt: 'set ftp:passive-mode off',
    }[f.mode];
    if (f.mode === 'eprt' && !f.host.includes(':')) throw new Error('lftp uses EPRT only over IPv6');
    const priority = f.version ? `set ssl:priority "NORMAL:-VERS-ALL:+VERS-TLS${f.version}"; ` : '';
    const tls = f.plain
      ? 'set ftp:ssl-allow false; '
      : `set ftp:ssl-force true; set ftp:ssl-protect-data ${prot === 'P' ? 'true' : 'false'}; set ssl:ca-file ${f.ca}; set ssl:verify-certificate yes; set ssl:check-hostname yes; ${priority}`;
    const script = `set net:timeout 10; set net:max-retries 1; set net:reconnect-interval-base 1; set xfer:clobber on; set cmd:fail-exit yes; set cmd:trace yes; ${tls}${modeSet}; get ${f.file} -o ${out}; bye`;
    const scheme = f.implicit ? 'ftps' : 'ftp';
    r = await lab.exec(f.ns ?? 'cli', ['lftp', '-d', '-u', `${user},${password}`, '-e', script, `${scheme}://${bracket(f.host)}:${port}`], { reject: false, timeout });
  }
  const sha = existsSync(out) ? createHash('sha256').update(readFileSync(out)).digest('hex') : '';
  rmSync(out, { force: true });
  return { ok: r.exitCode === 0, sha256: sha, output: `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-60).join('\n') };
}

/** The lab's data directory gets a 1 MiB file as well (the 20 MiB one is lab.sh's). */
export function addMiB(lab: Lab): string {
  const file = `${lab.runDir}/data/test1M.bin`;
  if (!existsSync(file)) writeFileSync(file, Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 2654435761) >>> 24)), { mode: 0o644 });
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * A shipped ruleset with the proxy intercepting tcp/990 (implicit FTPS) as well as tcp/21, and (closed)
 * without its "the LAN goes out" lines, so that a data connection gets through only by a pinhole.
 */
export function labRuleset(lab: Lab, file: string, o: { implicit: boolean; closed: boolean }): string {
  let text = readFileSync(file, 'utf8');
  if (o.implicit && !/dport \{ 21, 990 \}/.test(text)) text = text.replaceAll(/tcp dport 21 /g, 'tcp dport { 21, 990 } ');
  if (o.closed) {
    const closed = text
      .split('\n')
      .filter((l) => !/the (LAN|internal network) goes out/.test(l))
      .join('\n');
    if (closed === text) throw new Error(`${file}: no "goes out" line to take out`);
    text = closed;
  }
  const out = `${lab.runDir}/ftps-${file.split('/').at(-1)!}`;
  writeFileSync(out, text);
  return out;
}

/** A policy file in the lab's run directory. */
export function writePolicy(lab: Lab, name: string, lines: string[]): string {
  const file = `${lab.runDir}/${name}.policy`;
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** Lines the proxy logged since `from` (an index into proxy.lines). */
export const logSince = (proxy: ProxyProcess, from: number): string => proxy.lines.slice(from).join('\n');

/** The last lines of the proxy's log, for a failure message. */
export const logTail = (proxy: ProxyProcess, n = 40): string => `--- proxy log ---\n${proxy.lines.slice(-n).join('\n')}`;

export interface Conntrack {
  origSrc: string;
  origDst: string;
  origDport: number;
  replySrc: string;
  replySport: number;
  replyBytes: number;
  origBytes: number;
}

/** The firewall's TCP conntrack entries (nf_conntrack_acct must be on for the byte counts). */
export async function conntrack(lab: Lab): Promise<Conntrack[]> {
  const r = await lab.exec('fw', ['conntrack', '-L', '-p', 'tcp'], { reject: false });
  const rows: Conntrack[] = [];
  for (const line of r.stdout.split('\n')) {
    const kv = [...line.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!] as const);
    const first = (k: string, n: number): string => kv.filter(([key]) => key === k)[n]?.[1] ?? '';
    if (!first('src', 0)) continue;
    rows.push({
      origSrc: first('src', 0),
      origDst: first('dst', 0),
      origDport: Number(first('dport', 0)),
      replySrc: first('src', 1),
      replySport: Number(first('sport', 1)),
      origBytes: Number(first('bytes', 0) || 0),
      replyBytes: Number(first('bytes', 1) || 0),
    });
  }
  return rows;
}

/** Turn on conntrack's byte counts in the firewall namespace and forget what it tracked so far. */
export async function conntrackReset(lab: Lab): Promise<void> {
  await lab.exec('fw', ['sysctl', '-qw', 'net.netfilter.nf_conntrack_acct=1']);
  await lab.exec('fw', ['conntrack', '-F'], { reject: false });
}

/** The daemon's table as `nft list table` prints it ('' when absent). */
export async function nftTable(lab: Lab): Promise<string> {
  return (await lab.exec('fw', ['nft', 'list', 'table', 'inet', 'ftp-proxy'], { reject: false })).stdout;
}

/** ftps-raw.mjs in the client namespace. */
export async function rawFtps(lab: Lab, o: Record<string, unknown>): Promise<{ replies: string[]; closed: boolean; closedAfterMs?: number; error?: string }> {
  const r = await lab.exec('cli', [process.execPath, RAW_FTPS, JSON.stringify(o)], { reject: false, timeout: 60_000 });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as { replies: string[]; closed: boolean };
  } catch {
    throw new Error(`ftps-raw: ${r.stdout} ${r.stderr}`);
  }
}

/** Add an address to the server's interface (more servers on port 21, one address each). */
export async function serverAddress(lab: Lab, address: string): Promise<void> {
  const plen = address.includes(':') ? 64 : 24;
  await execa('ip', ['-n', lab.srv, 'addr', 'add', `${address}/${plen}`, 'dev', 'eth0', ...(address.includes(':') ? ['nodad'] : [])]);
}

/**
 * A wrapper for the daemon (or --check-config) that shows it `files` under /etc/ftp-proxy, in a mount
 * namespace of its own (an overlay over /etc): a shipped policy naming /etc/ftp-proxy/... runs as shipped,
 * and nothing is written to the host's /etc.
 */
let overlays = 0;
export function etcOverlay(lab: Lab, files: Record<string, string>): string[] {
  // one upper/work pair per mount: overlayfs refuses (or warns about) a pair in use by another mount
  const base = `${lab.runDir}/etc-overlay-${++overlays}`;
  mkdirSync(`${base}/upper/ftp-proxy`, { recursive: true });
  mkdirSync(`${base}/work`, { recursive: true });
  for (const [name, from] of Object.entries(files)) {
    mkdirSync(dirname(`${base}/upper/ftp-proxy/${name}`), { recursive: true });
    writeFileSync(`${base}/upper/ftp-proxy/${name}`, readFileSync(from), { mode: name.endsWith('.key') ? 0o600 : 0o644 });
  }
  return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount -t overlay overlay -o lowerdir=/etc,upperdir=${base}/upper,workdir=${base}/work /etc && exec "$@"`, 'sh'];
}

/** One row of the matrix: client, data-connection command, PROT, TLS version, file. */
export type Row = [Client, DataMode, Prot, TlsVersion, string];

/**
 * {PASV, EPSV, PORT, EPRT} x {PROT P, PROT C} x {TLS 1.2, 1.3}, one client per row, rotated so that each
 * client sees each PROT level and each version, and each command it can send: lftp sends EPRT only over
 * IPv6 (PORT on IPv4), and curl 7.88 never starts TLS on an active data connection (it accepts the
 * server's connection and waits; its PORT/EPRT rows are PROT C). 20 MiB on four rows, 1 MiB elsewhere.
 */
export const MATRIX: Row[] = [
  ['curl', 'pasv', 'P', '1.2', 'test20M.bin'],
  ['lftp', 'pasv', 'P', '1.3', 'test1M.bin'],
  ['python', 'pasv', 'C', '1.2', 'test1M.bin'],
  ['curl', 'pasv', 'C', '1.3', 'test20M.bin'],
  ['lftp', 'epsv', 'P', '1.2', 'test1M.bin'],
  ['python', 'epsv', 'P', '1.3', 'test20M.bin'],
  ['curl', 'epsv', 'C', '1.2', 'test1M.bin'],
  ['lftp', 'epsv', 'C', '1.3', 'test1M.bin'],
  ['python', 'port', 'P', '1.2', 'test1M.bin'],
  ['lftp', 'port', 'P', '1.3', 'test1M.bin'],
  ['curl', 'port', 'C', '1.2', 'test20M.bin'],
  ['python', 'port', 'C', '1.3', 'test1M.bin'],
  ['python', 'eprt', 'P', '1.2', 'test1M.bin'],
  ['python', 'eprt', 'P', '1.3', 'test1M.bin'],
  ['curl', 'eprt', 'C', '1.2', 'test1M.bin'],
  ['python', 'eprt', 'C', '1.3', 'test1M.bin'],
];

/**
 * Where the data went, from the firewall's conntrack entries (byte counts on), for a transfer of `size`
 * bytes from `server` (data ports low-high) to `client`:
 * - kernel: a forwarded flow between client and server carried the file (PROT C: the pinhole);
 * - relay: no such flow, and the proxy's own connection to the server's data port carried it (PROT P).
 */
export async function dataPath(lab: Lab, o: { client: string; server: string; ports: [number, number]; active: boolean; size: number }): Promise<'kernel' | 'relay' | 'none'> {
  const rows = await conntrack(lab);
  const inRange = (p: number): boolean => p >= o.ports[0] && p <= o.ports[1];
  const kernel = rows.some((r) =>
    o.active ? r.origSrc === o.server && r.replySrc === o.client && r.origBytes >= o.size : r.origSrc === o.client && r.replySrc === o.server && inRange(r.replySport) && r.replyBytes >= o.size,
  );
  if (kernel) return 'kernel';
  // the relay's server side: the proxy (the firewall's own address) and the server, whoever connected
  const relay = rows.some((r) => (r.origSrc === o.server && r.origBytes >= o.size) || (r.replySrc === o.server && r.origSrc !== o.client && r.replyBytes >= o.size));
  return relay ? 'relay' : 'none';
}

export const MiB = 1 << 20;
export const SIZES: Record<string, number> = { 'test1M.bin': MiB, 'test20M.bin': 20 * MiB };

export interface RowTarget {
  /** What the client dials. */
  host: string;
  port?: number;
  implicit?: boolean;
  /** The FTP server's address and passive range (for the conntrack check), and the client's address. */
  server: string;
  ports: [number, number];
  client: string;
  ca: string;
  sums: Record<string, string>;
  user?: string;
  password?: string;
  /** The firewall backend whose pinholes must be gone after the session (default nftables). */
  backend?: Backend;
}

/**
 * One matrix row with every check: the transfer, its sha256, no pinhole left, the client leg's TLS
 * version and a server leg in the log, and where the data went (PROT C: the kernel; PROT P: the relay).
 */
export async function matrixRow(lab: Lab, proxy: ProxyProcess, [client, mode, prot, version, file]: Row, t: RowTarget): Promise<void> {
  await conntrackReset(lab);
  const from = proxy.lines.length;
  const r = await fetchFile(lab, { client, host: t.host, mode, prot, version, file, ca: t.ca, ...(t.port ? { port: t.port } : {}), ...(t.implicit ? { implicit: true } : {}), ...(t.user ? { user: t.user, password: t.password ?? '' } : {}) });
  const log = logSince(proxy, from);
  // on failure, what the kernel saw of the data connection too (a pinhole that did not admit it)
  const seen = r.ok ? '' : `\n--- conntrack ---\n${(await lab.exec('fw', ['conntrack', '-L', '-p', 'tcp'], { reject: false })).stdout}\n--- nft ---\n${await nftTable(lab)}`;
  expect(r.ok, `${r.output}\n--- proxy log ---\n${log}${seen}`).toBe(true);
  expect(r.sha256, r.output).toBe(t.sums[file]);
  expect(await lab.waitNoPinholeObjects(t.backend ?? 'nftables')).toBe(0);
  expect(log).toMatch(new RegExp(`client TLS: TLSv${version.replace('.', '\\.')} `));
  expect(log).toMatch(/server TLS: TLSv1\.[23] /);
  const path = await dataPath(lab, { client: t.client, server: t.server, ports: t.ports, active: mode === 'port' || mode === 'eprt', size: SIZES[file]! });
  expect(path, `conntrack:\n${(await lab.exec('fw', ['conntrack', '-L', '-p', 'tcp'], { reject: false })).stdout}`).toBe(prot === 'C' ? 'kernel' : 'relay');
}
