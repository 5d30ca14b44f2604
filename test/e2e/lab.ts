// The end-to-end lab from TypeScript: namespaces, proftpd and rulesets through scripts/lab.sh, the proxy
// as a real process in the firewall namespace, real clients in the client namespace. Everything a lab
// creates is removed by down(), which the tests call in afterAll/afterEach even when they fail.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const LAB_SH = `${ROOT}scripts/lab.sh`;
export const CLI = `${ROOT}dist/cli.js`;
export const EXAMPLES = `${ROOT}nftables-examples/`;
export const RAW = `${ROOT}test/helpers/ftp-raw.mjs`;

const TOOLS: [string, string][] = [
  ['ip', 'iproute2'],
  ['nft', 'nftables'],
  ['proftpd', 'proftpd-basic'],
  ['lftp', 'lftp'],
  ['curl', 'curl'],
  ['tnftp', 'tnftp'],
  ['openssl', 'openssl'],
  ['bc', 'bc'],
  ['sha256sum', 'coreutils'],
];

/**
 * End-to-end tests never skip: without root, a tool, or the build, they fail and say what to do.
 */
/** Is `pid` a live process (a killed one nobody reaped yet, a zombie, is not)? */
export const alive = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0] !== 'Z';
  } catch {
    return false;
  }
};

export async function requireLab(): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('they must run as root (network namespaces, nftables): sudo npm test');
  const missing: string[] = [];
  for (const [tool, pkg] of TOOLS) {
    const r = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (r.exitCode !== 0) missing.push(pkg);
  }
  if (missing.length) problems.push(`missing tools: apt-get install ${[...new Set(missing)].join(' ')}`);
  if (!existsSync(CLI)) problems.push('dist/cli.js is missing: npm run build');
  if (problems.length) throw new Error(`end-to-end tests cannot run: ${problems.join('; ')}`);
}

let labCount = 0;

export type Mode = 'forward' | 'reverse';
export type Backend = 'nftables' | 'iptables';

export class Lab {
  readonly cli: string;
  readonly fw: string;
  readonly srv: string;
  private readonly procs = new Set<ProxyProcess>();
  private readonly extra = new Set<ChildProcess>();

  private constructor(
    readonly name: string,
    readonly mode: Mode,
  ) {
    this.cli = `${name}-cli`;
    this.fw = `${name}-fw`;
    this.srv = `${name}-srv`;
  }

  /** What clients dial: the server (forward) or the firewall's public address (reverse). */
  get target(): string {
    return this.mode === 'forward' ? '198.51.100.21' : '203.0.113.5';
  }

  get serverAddress(): string {
    return this.mode === 'forward' ? '198.51.100.21' : '10.0.0.21';
  }

  get clientAddress(): string {
    return this.mode === 'forward' ? '192.168.1.10' : '203.0.113.50';
  }

  static async up(mode: Mode): Promise<Lab> {
    const lab = new Lab(`ftpe${process.pid}x${++labCount}`, mode);
    try {
      await lab.sh('up', mode);
    } catch (e) {
      await lab.down();
      throw e;
    }
    return lab;
  }

  get env(): Record<string, string> {
    return { LAB: this.name };
  }

  async sh(...args: string[]) {
    return execa(LAB_SH, args, { env: this.env });
  }

  /** The iptables variant the lab's .rules files are loaded with (and the proxy is told to use). */
  iptables = 'iptables';

  /**
   * A shipped example without its "the LAN goes out" lines (written to the lab's run directory): a
   * firewall that forwards nothing but what the proxy admits. A second connection to a used pinhole then
   * times out; with the LAN let out it would reach the server's own port and be refused there, as it is
   * by a listener that has closed, and a test could not tell a consumed pinhole from a live one.
   */
  closedLan(file: string): string {
    const out = `${this.runDir}/closed-${file.split('/').at(-1)!}`;
    const text = readFileSync(file, 'utf8');
    const closed = text
      .split('\n')
      .filter((l) => !l.includes('the LAN goes out'))
      .join('\n');
    if (closed === text) throw new Error(`${file}: no "the LAN goes out" line to take out`);
    writeFileSync(out, closed);
    return out;
  }

  /** Load a ruleset into the firewall, running its "# setup:" lines first (lab.sh fw-load). */
  async loadRuleset(file: string): Promise<void> {
    await execa(LAB_SH, ['fw-load', file], { env: { ...this.env, IPTABLES: this.iptables } });
  }

  /**
   * Pinholes the firewall holds: nftables elements of table inet ftp-proxy, or iptables session chains
   * (FTPP-<instance id>-<session>-...) of IPv4 and IPv6.
   */
  async pinholeObjects(backend: Backend): Promise<number> {
    if (backend === 'nftables') return this.pinholeElements();
    let n = 0;
    for (const save of await this.iptablesSaves()) n += (save.match(/^:FTPP-[0-9a-f]{8}-\d+-/gm) ?? []).length;
    return n;
  }

  /** Anything of the proxy's left in the firewall at all (its table, or its FTPPROXY chains). */
  async proxyObjects(backend: Backend): Promise<boolean> {
    if (backend === 'nftables') return this.tableExists();
    return (await this.iptablesSaves()).some((save) => /FTPP/.test(save));
  }

  async iptablesSaves(): Promise<string[]> {
    const v6 = `ip6${this.iptables.slice(2)}`;
    return Promise.all(
      [`${this.iptables}-save`, `${v6}-save`].map(async (cmd) => (await this.exec('fw', [cmd], { reject: false })).stdout),
    );
  }

  async waitNoPinholeObjects(backend: Backend, ms = 5000): Promise<number> {
    const end = Date.now() + ms;
    let n = await this.pinholeObjects(backend);
    while (n > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      n = await this.pinholeObjects(backend);
    }
    return n;
  }

  /** Run a command inside one of the lab's namespaces. */
  exec(ns: 'cli' | 'fw' | 'srv', cmd: string[], opts: { reject?: boolean; input?: string; timeout?: number } = {}) {
    const name = ns === 'cli' ? this.cli : ns === 'fw' ? this.fw : this.srv;
    return execa('ip', ['netns', 'exec', name, ...cmd], { reject: opts.reject ?? true, ...(opts.input !== undefined ? { input: opts.input } : {}), ...(opts.timeout ? { timeout: opts.timeout } : {}) });
  }

  /** A download through whatever is in the path, with sha256 check. */
  async get(client: 'lftp' | 'curl' | 'tnftp', mode: 'pasv' | 'epsv' | 'port' | 'eprt', file = 'test20M.bin', env: Record<string, string> = {}) {
    const r = await execa(LAB_SH, ['get', client, mode, file], { env: { ...this.env, ...env }, reject: false });
    return { ok: r.exitCode === 0, output: `${r.stdout}\n${r.stderr}`.trim() };
  }

  /** Start the proxy in the firewall namespace, in the foreground (-d), and wait until it listens. */
  async proxy(args: string[], env: Record<string, string> = {}, nodeArgs: string[] = [], wrap: string[] = []): Promise<ProxyProcess> {
    const p = new ProxyProcess(this.fw, args, env, nodeArgs, wrap);
    this.procs.add(p);
    await p.waitFor(/listening on /, 10_000);
    return p;
  }

  /** A process of the test's own in a namespace (a listener, a probe); killed in down(). */
  spawn(ns: 'cli' | 'fw' | 'srv', cmd: string[]): ChildProcess {
    const name = ns === 'cli' ? this.cli : ns === 'fw' ? this.fw : this.srv;
    const c = spawn('ip', ['netns', 'exec', name, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.extra.add(c);
    return c;
  }

  /** The raw FTP client (test/helpers/ftp-raw.mjs) in the client namespace; its JSON answer. */
  async raw(args: string[], timeout = 60_000): Promise<Record<string, unknown>> {
    const r = await this.exec('cli', [process.execPath, RAW, ...args], { reject: false, timeout });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`ftp-raw ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    }
  }

  /** The raw client started in the background (for sessions held open, slow downloads). */
  rawSpawn(args: string[]): ChildProcess {
    return this.spawn('cli', [process.execPath, RAW, ...args]);
  }

  /** The lab's run directory (downloads, proftpd files). */
  get runDir(): string {
    return `/dev/shm/${this.name}`;
  }

  /** sha256 of a lab file as served. */
  sha256(file: string): string {
    const line = readFileSync(`${this.runDir}/sha256.txt`, 'utf8')
      .split('\n')
      .find((l) => l.endsWith(`  ${file}`));
    return line?.split(' ')[0] ?? '';
  }

  /** Elements of the proxy's sets and maps in the firewall (0 when the table is absent). */
  async pinholeElements(): Promise<number> {
    const r = await this.exec('fw', ['nft', '-j', 'list', 'table', 'inet', 'ftp-proxy'], { reject: false });
    if (r.exitCode !== 0) return 0;
    return countElements(JSON.parse(r.stdout) as unknown);
  }

  async tableExists(): Promise<boolean> {
    return (await this.exec('fw', ['nft', 'list', 'table', 'inet', 'ftp-proxy'], { reject: false })).exitCode === 0;
  }

  /** Wait until the firewall holds no pinhole element (sessions end asynchronously). */
  async waitNoPinholes(ms = 5000): Promise<number> {
    const end = Date.now() + ms;
    let n = await this.pinholeElements();
    while (n > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      n = await this.pinholeElements();
    }
    return n;
  }

  /** Remove everything the lab made. Every step runs even when an earlier one fails. */
  async down(): Promise<void> {
    for (const p of this.procs) await p.stop().catch(() => undefined);
    for (const c of this.extra) {
      try {
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    await execa(LAB_SH, ['down'], { env: this.env, reject: false });
  }
}

/** Pinhole elements: every element of the proxy's sets and maps but its registry of running instances. */
export function countElements(listing: unknown): number {
  let n = 0;
  for (const item of (listing as { nftables?: Record<string, { name?: string; elem?: unknown[] }>[] }).nftables ?? []) {
    if (item.set?.name !== 'instances') n += item.set?.elem?.length ?? 0;
    n += item.map?.elem?.length ?? 0;
  }
  return n;
}

export class ProxyProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  private waiters: (() => void)[] = [];
  exitCode: number | null = null;
  private readonly exited: Promise<number | null>;

  /** wrap: a command that execs its arguments (e.g. unshare ... sh -c '...; exec "$@"'), put in front. */
  constructor(ns: string, args: string[], env: Record<string, string>, nodeArgs: string[] = [], wrap: string[] = []) {
    // `ip netns exec` execs the command, so this pid is node's own (as long as `wrap` execs too).
    const cmd = [...wrap, 'ip', 'netns', 'exec', ns, process.execPath, ...nodeArgs, CLI, '-d', ...args];
    this.child = spawn(cmd[0]!, cmd.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      for (const w of this.waiters.splice(0)) w();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code) => {
        this.exitCode = code;
        for (const w of this.waiters.splice(0)) w();
        resolve(code);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get log(): string {
    return this.lines.join('\n');
  }

  async waitFor(re: RegExp, ms = 5000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit) return hit;
      if (this.exitCode !== null) throw new Error(`proxy exited (${this.exitCode}) before ${re}:\n${this.log}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`proxy did not log ${re} within ${ms} ms:\n${this.log}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Send a signal and wait for the exit status. */
  async signal(sig: NodeJS.Signals, ms = 10_000): Promise<number | null> {
    if (this.exitCode === null) this.child.kill(sig);
    const t = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref());
    const res = await Promise.race([this.exited, t]);
    if (res === 'timeout') throw new Error(`proxy did not exit on ${sig}`);
    return res;
  }

  async stop(): Promise<void> {
    if (this.exitCode !== null) return;
    await this.signal('SIGTERM').catch(async () => {
      this.child.kill('SIGKILL');
      await this.exited;
    });
  }
}
