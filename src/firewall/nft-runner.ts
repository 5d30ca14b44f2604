// Ways to hand nft scripts to the kernel: libnftables in-process (through koffi, run on koffi's worker
// thread so the event loop never waits on netlink), or `nft -f -` where it will not load. Negotiations
// go over raw nfnetlink (src/firewall/nfnl/) when its self-test passed; these runners set up, repair and
// sweep the table, and carry every change where the netlink path is off. Both take one script per call;
// the kernel applies a script as one transaction.
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { type LibNftables, libnftables, NFT_CTX_OUTPUT_JSON } from '../native.js';
import { FirewallError } from './backend.js';

export interface NftRunner {
  readonly kind: 'libnftables' | 'nft';
  /** Apply a script; resolves with what nft printed. Rejects with FirewallError (nft's own message). */
  run(script: string): Promise<string>;
  /** Run a listing command with JSON output. */
  json(command: string): Promise<unknown>;
  close(): void;
}

/** The most scripts one call takes; more wait for the next. */
const BATCH_MAX = 256;

interface Batch {
  scripts: string[];
  waiters: { resolve: (out: string) => void; reject: (e: unknown) => void }[];
}

/**
 * Calls one at a time, and scripts that arrive while one is in flight go together into the next: one
 * transaction (one netlink exchange, one commit) for the pinholes of many sessions, where one call each
 * made them queue behind one another (bench/: 342 full sessions/s at 100 concurrent clients). A
 * transaction is all or nothing, so when a batch fails its scripts run again one by one, and each caller
 * gets its own answer (EEXIST for a taken proxy port, ENOENT for a missing table).
 */
export class ScriptBatcher {
  private open: Batch | null = null;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly call: (script: string) => Promise<string>) {}

  /** Run fn after everything queued so far (scripts queued later do not overtake it). */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    this.open = null;
    return this.enqueue(fn);
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Resolves with what the call printed (for a batch, the whole batch's output). */
  run(script: string): Promise<string> {
    const text = script.endsWith('\n') ? script : `${script}\n`;
    return new Promise((resolve, reject) => {
      if (!this.open || this.open.scripts.length >= BATCH_MAX) {
        const batch: Batch = { scripts: [], waiters: [] };
        this.open = batch;
        void this.enqueue(() => {
          if (this.open === batch) this.open = null;
          return this.flush(batch);
        });
      }
      this.open.scripts.push(text);
      this.open.waiters.push({ resolve, reject });
    });
  }

  private async flush(batch: Batch): Promise<void> {
    if (batch.scripts.length > 1) {
      try {
        const out = await this.call(batch.scripts.join(''));
        for (const w of batch.waiters) w.resolve(out);
        return;
      } catch {
        // one of them failed, and with it the transaction: each on its own below
      }
    }
    for (const [i, script] of batch.scripts.entries()) {
      try {
        batch.waiters[i]!.resolve(await this.call(script));
      } catch (e) {
        batch.waiters[i]!.reject(e);
      }
    }
  }
}

class LibnftablesRunner implements NftRunner {
  readonly kind = 'libnftables' as const;
  private readonly ctx: unknown;
  private readonly jsonCtx: unknown;
  /** One context is not thread-safe: calls go through the batcher one at a time. */
  private readonly queue = new ScriptBatcher((script) => this.call(this.ctx, script));

  constructor(private readonly l: LibNftables) {
    this.ctx = this.newCtx(0);
    this.jsonCtx = this.newCtx(NFT_CTX_OUTPUT_JSON);
  }

  private newCtx(outputFlags: number): unknown {
    const ctx = this.l.ctxNew(0);
    if (!ctx) throw new FirewallError('nft_ctx_new failed');
    this.l.bufferOutput(ctx);
    this.l.bufferError(ctx);
    if (outputFlags) this.l.setOutputFlags(ctx, outputFlags);
    return ctx;
  }

  run(script: string): Promise<string> {
    return this.queue.run(script);
  }

  async json(command: string): Promise<unknown> {
    const out = await this.queue.serialize(() => this.call(this.jsonCtx, command));
    return JSON.parse(out) as unknown;
  }

  private call(ctx: unknown, script: string): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.l.run.async(ctx, script, (err: unknown, rc: unknown) => {
        // Read both buffers every time: reading is what resets them for the next call.
        const output = String(this.l.getOutput(ctx) ?? '');
        const error = String(this.l.getError(ctx) ?? '');
        if (err) reject(new FirewallError(`libnftables call failed: ${String(err)}`, script));
        else if (rc !== 0) reject(new FirewallError(cleanNftError(error) || `nft returned ${String(rc)}`, script));
        else resolve(output);
      });
    });
  }

  close(): void {
    // Contexts are freed after the queue drains; a call still on the worker thread must finish first.
    void this.queue.serialize(async () => {
      this.l.ctxFree(this.ctx);
      this.l.ctxFree(this.jsonCtx);
    });
  }
}

class NftCliRunner implements NftRunner {
  readonly kind = 'nft' as const;
  private dir: string | null = null;
  private seq = 0;

  constructor(private readonly nft = 'nft') {}

  // `nft -f -` cannot read Node's stdin pipe (a socketpair: opening /dev/stdin fails with ENXIO), so
  // each script goes through a file in a private directory.
  async run(script: string): Promise<string> {
    this.dir ??= await mkdtemp(join(tmpdir(), 'ftp-proxy-nft-'));
    const file = join(this.dir, `${process.pid}-${this.seq++}.nft`);
    await writeFile(file, script, { mode: 0o600 });
    try {
      const r = await execa(this.nft, ['-f', file], { reject: false });
      if (r.failed) throw new FirewallError(cleanNftError(String(r.stderr ?? '')) || String(r.shortMessage ?? 'nft failed'), script);
      return r.stdout;
    } finally {
      await rm(file, { force: true });
    }
  }

  async json(command: string): Promise<unknown> {
    const r = await execa(this.nft, ['-j', ...command.split(' ')], { reject: false });
    if (r.failed) throw new FirewallError(cleanNftError(String(r.stderr ?? '')) || String(r.shortMessage ?? 'nft failed'), command);
    return JSON.parse(r.stdout) as unknown;
  }

  close(): void {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}

/**
 * nft's first error, with the command it names: "Could not process rule: File exists (add element ...)".
 * nft also echoes caret lines under the command; those are dropped.
 */
export function cleanNftError(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '' && !/^\s*[~^]+[~^\s]*$/.test(l));
  const i = lines.findIndex((l) => l.includes('Error:'));
  if (i < 0) return (lines[0] ?? '').trim();
  const message = lines[i]!.replace(/^.*?Error:\s*/, '').trim();
  const command = lines[i + 1];
  return command && !command.includes('Error:') ? `${message} (${command.trim()})` : message;
}

/**
 * libnftables when it loads (the normal case on any host with nftables installed), else the nft command.
 * FTP_PROXY_NFT=nft forces the command (for hosts where the library misbehaves, and for tests).
 */
export function createNftRunner(prefer: string | undefined = process.env.FTP_PROXY_NFT): NftRunner {
  if (prefer !== 'nft') {
    try {
      return new LibnftablesRunner(libnftables());
    } catch (e) {
      if (prefer === 'libnftables') throw e;
    }
  }
  return new NftCliRunner();
}
