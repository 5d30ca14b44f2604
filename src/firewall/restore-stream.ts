// A kept `iptables-restore --noflush` process, fed one script at a time (the iptables backend keeps two
// per family: additions, removals). A process per negotiation spent 45-55 ms starting and reading the
// ruleset before it did anything (bench/README.md); a kept one commits each table block at its COMMIT
// line (iptables-nft and iptables-legacy alike) and only the commit is left.
//
// iptables-restore says nothing when a block commits, so each script is followed by an acknowledgement
// block, `*filter -S OUTPUT COMMIT`, whose listing starts with `-P OUTPUT <policy>`: when that line
// arrives, every block before it has committed. The tool's stdout is a pipe, which C stdio buffers until
// exit, so the process runs under `stdbuf -oL` (line-buffered). A failing line ends the process with
// "line N failed" on stderr: N counts the lines of the whole process, so it is turned back into the
// line of the script that failed, and the next script starts a new process.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { FirewallError } from './backend.js';

const ACK_BLOCK = '*filter\n-S OUTPUT\nCOMMIT\n';
const ACK_LINES = 3;
const ACK_LINE = /^-P OUTPUT /;
const OUTPUT_RULE = /^-A OUTPUT /;

/** The process, as the stream uses it (a fake in the unit tests). */
export interface RestoreProcess {
  write(text: string): void;
  onLine(cb: (line: string) => void): void;
  onStderr(cb: (text: string) => void): void;
  /** code null: killed by a signal; error: it could not be started at all. */
  onExit(cb: (code: number | null, error?: Error) => void): void;
  end(): void;
  kill(): void;
}

/** `stdbuf -oL <cmd>-restore --noflush --wait`, stdout split into lines; `prefix` runs it inside something (`ip netns exec NS`, tests). */
export function spawnRestore(command: string, prefix: string[] = []): RestoreProcess {
  const argv = [...prefix, 'stdbuf', '-oL', command, '--noflush', '--wait'];
  const p: ChildProcessWithoutNullStreams = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  p.stdin.on('error', () => undefined); // EPIPE after a failing line: the exit says what happened
  let partial = '';
  const lineCbs: ((l: string) => void)[] = [];
  p.stdout.setEncoding('utf8');
  p.stdout.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const l of lines) for (const cb of lineCbs) cb(l);
  });
  p.stderr.setEncoding('utf8');
  let exited = false;
  return {
    write: (text) => {
      p.stdin.write(text);
    },
    onLine: (cb) => lineCbs.push(cb),
    onStderr: (cb) => p.stderr.on('data', cb),
    onExit: (cb) => {
      p.on('error', (e) => {
        if (!exited) cb(null, e);
        exited = true;
      });
      // 'close', not 'exit': stderr (the failing line) has been read by then
      p.on('close', (code) => {
        if (!exited) cb(code);
        exited = true;
      });
    },
    end: () => p.stdin.end(),
    kill: () => p.kill('SIGKILL'),
  };
}

interface Job {
  script: string;
  timeoutMs: number;
  /** What the script's own listings (-S) printed. */
  out: string[];
  resolve: (out: string[]) => void;
  reject: (e: Error) => void;
  /** Removals merged into this one transaction per table. */
  merged?: Job[];
  /** Failed when merged: applied on its own now. */
  alone?: boolean;
  /** The process's line numbers of the script's first and last lines (the acknowledgement follows). */
  base?: number;
  last?: number;
}

/**
 * Scripts of several removals as one block per table, in the tables' first order: each COMMIT is a
 * transaction, and with many live pinholes iptables-nft's cost is reading the ruleset at each one, so
 * ten removals cost about what one does.
 */
export function mergeByTable(scripts: string[]): string {
  const tables = new Map<string, string[]>();
  for (const script of scripts) {
    let into: string[] | null = null;
    for (const line of script.split('\n')) {
      if (line.startsWith('*')) {
        into = tables.get(line) ?? [];
        tables.set(line, into);
      } else if (line === 'COMMIT') into = null;
      else if (line && into) into.push(line);
    }
  }
  return [...tables].map(([t, lines]) => [t, ...lines, 'COMMIT'].join('\n')).join('\n') + '\n';
}

/** The most removals merged into one transaction. */
const MERGE_MAX = 200;

/** "iptables-restore: line 12 failed: No chain/target/match by that name." -> 12 */
export function failedLine(stderr: string): number | null {
  const m = /line (\d+) failed/.exec(stderr);
  return m ? Number(m[1]) : null;
}

/** The same message with the line number counted from the script's first line. */
export function renumber(stderr: string, base: number): string {
  return stderr.replace(/line (\d+) failed/, (_all, n: string) => `line ${Number(n) - base + 1} failed`);
}

export interface RestoreStreamOptions {
  /** "iptables-restore", "ip6tables-legacy-restore", ... (named in errors) */
  command: string;
  spawn?: (command: string) => RestoreProcess;
  /** No acknowledgement after this long: the process is killed and the script fails (default 30 s). */
  timeoutMs?: number;
  /** Scripts queued behind the one in flight go as one block per table (removals: mergeByTable). */
  merge?: boolean;
}

/**
 * Scripts applied one at a time through a kept process. `apply()` resolves when the script's blocks have
 * committed and rejects with the tool's own error (its line counted within the script) when one failed;
 * blocks before the failing one stay committed, as with a process per script.
 */
export class RestoreStream {
  private proc: RestoreProcess | null = null;
  private lines = 0;
  private stderr = '';
  private readonly queue: Job[] = [];
  private current: Job | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly idle: (() => void)[] = [];

  constructor(private readonly o: RestoreStreamOptions) {}

  /**
   * Resolves with what the script's own listings printed (`-S CHAIN`: the kept process can check the
   * ruleset for the price of listing one chain, where `-C` made iptables-nft read every rule of the table).
   */
  apply(script: string, timeoutMs = this.o.timeoutMs ?? 30_000): Promise<string[]> {
    if (this.closed) return Promise.reject(new FirewallError(`${this.o.command}: stopped`, script));
    return new Promise<string[]>((resolve, reject) => {
      this.queue.push({ script, timeoutMs, out: [], resolve, reject });
      this.next();
    });
  }

  /** End the process once the queued scripts are done; later scripts are refused. */
  async close(): Promise<void> {
    if (this.current || this.queue.length) await new Promise<void>((r) => this.idle.push(r));
    this.closed = true;
    this.proc?.end();
    this.proc = null;
  }

  private start(): RestoreProcess {
    const p = (this.o.spawn ?? spawnRestore)(this.o.command);
    this.lines = 0;
    this.stderr = '';
    p.onLine((l) => {
      if (this.proc !== p) return;
      if (ACK_LINE.test(l)) this.done(null);
      // the acknowledgement's rules (after its ACK_LINE) and iptables-nft's notes are nobody's output
      else if (this.current && !OUTPUT_RULE.test(l) && !l.startsWith('#')) this.current.out.push(l);
    });
    p.onStderr((t) => {
      if (this.proc === p) this.stderr += t;
    });
    p.onExit((code, error) => {
      if (this.proc !== p) return;
      this.proc = null;
      const job = this.current;
      if (!job) return;
      const msg = error ? `cannot start stdbuf ${this.o.command}: ${error.message}` : this.stderr.trim() || `${this.o.command} exited (${code ?? 'killed'})`;
      const line = failedLine(this.stderr);
      // The failing line was the acknowledgement's own: the script itself committed.
      if (line !== null && job.last !== undefined && line > job.last) this.done(null);
      else this.done(new FirewallError(`${this.o.command} --noflush --wait: ${job.base !== undefined ? renumber(msg, job.base) : msg}`.split('\n').slice(0, 2).join('; '), job.script));
    });
    return p;
  }

  private next(): void {
    if (this.current) return;
    const job = this.o.merge ? this.merged() : this.queue.shift();
    if (!job) {
      for (const r of this.idle.splice(0)) r();
      return;
    }
    this.current = job;
    this.proc ??= this.start();
    const text = job.script.endsWith('\n') ? job.script : `${job.script}\n`;
    job.base = this.lines + 1;
    job.last = this.lines + lineCount(text);
    this.lines = job.last + ACK_LINES;
    this.timer = setTimeout(() => {
      const p = this.proc;
      this.proc = null;
      p?.kill();
      this.done(new FirewallError(`${this.o.command} --noflush --wait: no answer in ${job.timeoutMs / 1000} s (killed it)`, job.script));
    }, job.timeoutMs);
    this.timer.unref();
    this.proc.write(text + ACK_BLOCK);
  }

  /** The queued scripts, merged into one job (each alone once a merged run of it failed). */
  private merged(): Job | undefined {
    const first = this.queue[0];
    if (!first || first.alone) return this.queue.shift();
    let n = 0;
    while (n < this.queue.length && n < MERGE_MAX && !this.queue[n]!.alone) n++;
    if (n === 1) return this.queue.shift();
    const merged = this.queue.splice(0, n);
    return { script: mergeByTable(merged.map((j) => j.script)), timeoutMs: Math.max(...merged.map((j) => j.timeoutMs)), out: [], resolve: () => undefined, reject: () => undefined, merged };
  }

  private done(error: Error | null): void {
    const job = this.current;
    if (!job) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.current = null;
    if (job.merged && error) {
      // A transaction is all or nothing: apply each on its own, so one that fails fails alone.
      this.queue.unshift(...job.merged.map((j) => ({ ...j, alone: true })));
    } else if (job.merged) for (const j of job.merged) j.resolve([]);
    else if (error) job.reject(error);
    else job.resolve(job.out);
    this.next();
  }
}

const lineCount = (text: string): number => {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
  return text.endsWith('\n') ? n : n + 1;
};
