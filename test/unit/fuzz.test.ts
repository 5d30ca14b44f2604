// Fuzzing the FTP control channel (src/ftp/control.ts, lines.ts, port-args.ts): many sessions of
// realistic, mutated and random lines, in both directions, through a LineSplitter per direction in
// random chunk sizes exactly as src/session.ts feeds them; every 'negotiate' is answered, now or later,
// ok or failed. Invariants are counted, not thrown, and each test expects zero violations at the end.
//
//   FUZZ_SEED=<n or 0x..>   another seed for the random pass (it is printed on every run)
//   FUZZ_SESSIONS=<n>       at least this many random sessions (default 1000; more lines for a soak)
//   FUZZ_SESSION=<i>        run only session #i of the random pass (violations name their session)
//
// Seeds: test/fuzz/client-seeds.txt and test/fuzz/server-seeds.txt (format in their header comments).
//
// What is checked (names as they appear in a failure):
//  - exception: no call into the machine or the splitter throws.
//  - negotiate-*: every pinhole request names a port in 1024..65535 and comes from input the parsers in
//    port-args.ts accept: for 'active', the client line just processed is PORT/EPRT whose argument
//    parsePortArg/parseEprtArg accept with that port; for 'passive', the server reply just completed is a
//    227/229 (at most 16 lines) that parse227/parse229 accept with that port, and the PASV/EPSV it answers
//    went to the server. Never across address families, never PASV/PORT in an IPv6 session.
//  - payload-*: every toServer/toClient is a Buffer of at most 500 bytes that ends in "\n".
//  - forwarded-*: toServer is a line the client sent (never PORT/EPRT, AUTH, a refused USER under -A, or
//    a family-refused PASV/EPSV) or the proxy's PORT/EPRT rewrite right after an ok active negotiation.
//  - made-up-reply-malformed: toClient is a line the server sent, or one reply line the proxy made up:
//    "ddd text\r\n", printable ASCII; after an ok passive negotiation the first one is the 227/229 naming
//    the original server and the proxy port, after a failed one a 425.
//  - close / after-close: 'close' is the last action of its call, and every later call returns nothing.
//  - queue-* / pending-*: lines fed to a blocked side are queued silently and drained in order;
//    queuedLines is exactly what was fed while blocked (< 2000); pendingCommands <= MAX_PENDING (1000).
//  - splitter-*: the LineSplitter returns the bytes it was given, unchanged, as lines of at most 500
//    bytes without NUL, and fails only when it must.
//  - heap: heapUsed + external (Buffers) after the random pass is within 64 MiB of before (after gc).
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  type Action,
  type ControlOptions,
  FtpControl,
  MAX_PENDING,
  type Negotiation,
  type NegotiationResult,
  type SessionAddresses,
} from '../../src/ftp/control.js';
import { type LineEvent, LineSplitter } from '../../src/ftp/lines.js';
import { parse227, parse229, parseEprtArg, parsePortArg } from '../../src/ftp/port-args.js';
import { V4, V6 } from '../helpers/control.js';

// ---------------------------------------------------------------------------------------------------
// Limits the invariants use. Written out here on purpose (not imported): a change to the source's
// constants must not silently loosen the test.

/** OpenBSD's MIN_PORT: no pinhole to a privileged port. */
const MIN_PORT = 1024;
/** OpenBSD's control-line limit, both directions. */
const MAX_LINE_BYTES = 500;
/** Most lines of a 227/229 reply the proxy may read (control.ts MAX_REPLY_LINES). */
const MAX_REPLY_LINES = 16;
/** pendingCommands may not pass this: MAX_PENDING, which may not be raised above 1000 unnoticed. */
const PENDING_LIMIT = Math.min(MAX_PENDING, 1000);
/** queuedLines must stay below this; the flood sessions queue up to 1,500. */
const MAX_QUEUED = 2000;
const HEAP_SLACK = 64 * 1024 * 1024;

const DEFAULT_SEED = 0x2f7a9c31;
/** The per-seed pass does not depend on FUZZ_SEED: always the same inputs. */
const SEED_PASS_SEED = 0x5eed0001;
const MIN_LINES = 100_000;

type Side = 'client' | 'server';
type NegotiateAction = Extract<Action, { type: 'negotiate' }>;

const latin1 = (b: Buffer): string => b.toString('latin1');
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const show = (b: Buffer | string): string => {
  const s = typeof b === 'string' ? b : latin1(b);
  const j = JSON.stringify(s.length > 120 ? s.slice(0, 120) : s);
  return s.length > 120 ? `${j}...(${s.length} bytes)` : j;
};

// ---------------------------------------------------------------------------------------------------
// Deterministic PRNG (sfc32) and seed mixing.

class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** 0 <= n < max */
  int(max: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * max);
  }

  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from an empty list');
    return xs[this.int(xs.length)]!;
  }
}

function mix(a: number, b: number): number {
  let h = (a ^ Math.imul((b + 0x9e3779b9) | 0, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`${name} must be an integer 0..2^32-1 (decimal or 0x...), got ${raw}`);
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Seed corpus.

function unescapeEntry(row: string, where: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const c = row.charCodeAt(i);
    if (c !== 0x5c) {
      if (c > 0x7e || c < 0x20) throw new Error(`${where}: write byte ${c} as \\x${c.toString(16)}`);
      out.push(c);
      continue;
    }
    const e = row[i + 1];
    const simple: Record<string, number> = { r: 13, n: 10, t: 9, '0': 0, '\\': 0x5c };
    if (e !== undefined && e in simple) {
      out.push(simple[e]!);
      i += 1;
    } else if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(row.slice(i + 2, i + 4))) {
      out.push(parseInt(row.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      throw new Error(`${where}: unknown escape \\${e ?? ''}`);
    }
  }
  return Buffer.from(out);
}

function loadSeeds(name: string): Buffer[] {
  const text = readFileSync(new URL(`../fuzz/${name}`, import.meta.url), 'latin1');
  const seeds: Buffer[] = [];
  text.split('\n').forEach((raw, i) => {
    const row = raw.replace(/\r$/, '');
    if (row === '' || row.startsWith('#')) return;
    const entry = unescapeEntry(row, `${name}:${i + 1}`);
    if (entry.at(-1) !== 0x0a) throw new Error(`${name}:${i + 1}: an entry must end with \\n`);
    seeds.push(entry);
  });
  return seeds;
}

const CLIENT_SEEDS = loadSeeds('client-seeds.txt');
const SERVER_SEEDS = loadSeeds('server-seeds.txt');

/** An entry's protocol lines, each with its "\n". */
function linesOf(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  while (start < b.length) {
    const nl = b.indexOf(0x0a, start);
    const end = nl === -1 ? b.length : nl + 1;
    out.push(b.subarray(start, end));
    start = end;
  }
  return out;
}

/** Client seeds that start a data connection, for dialogs that negotiate. */
const PASSIVE_SEEDS = CLIENT_SEEDS.filter((s) => /^(PASV|EPSV)( [12])?\r?\n/i.test(latin1(s)));
const ACTIVE_SEEDS = CLIENT_SEEDS.filter((s) => /^(PORT|EPRT) /i.test(latin1(s)));

const SERVER_BY_CODE = new Map<string, Buffer[]>();
for (const s of SERVER_SEEDS) {
  const code = /^\d{3}/.exec(latin1(s))?.[0];
  if (code) SERVER_BY_CODE.set(code, [...(SERVER_BY_CODE.get(code) ?? []), s]);
}

// ---------------------------------------------------------------------------------------------------
// Independent readings of the protocol (the test's own, not the machine's).

/** Verb and argument of a command line: RFC 959 "VERB<SP>arg", after any leading Telnet sequences. */
function commandOf(line: Buffer): { verb: string; arg: string } {
  let i = 0;
  while (line[i] === 0xff) {
    const cmd = line[i + 1];
    if (cmd === undefined || cmd < 240) i += 1; // stray IAC
    else if (cmd >= 251 && cmd <= 254) i += 3; // WILL/WONT/DO/DONT <option>
    else i += 2; // IAC IP, IAC DM, IAC IAC ...
  }
  const text = latin1(line.subarray(i)).replace(/\r?\n$/, '');
  const sp = text.indexOf(' ');
  const verb = (sp === -1 ? text : text.slice(0, sp)).replace(/\r$/, '').toUpperCase();
  return { verb, arg: sp === -1 ? '' : text.slice(sp + 1).replace(/\r$/, '') };
}

interface Reply {
  code: string;
  lines: Buffer[];
}

/** RFC 959 reply framing: "ddd-" opens a multi-line reply, a line starting "ddd " (or "ddd" EOL) ends it. */
class ReplyFramer {
  private open: Reply | null = null;

  /** The reply this line completes, if it completes one. */
  feed(line: Buffer): Reply | null {
    const text = latin1(line);
    if (this.open) {
      this.open.lines.push(line);
      const c = text[3];
      if (text.startsWith(this.open.code) && (c === undefined || c === ' ' || c === '\r' || c === '\n')) {
        const done = this.open;
        this.open = null;
        return done;
      }
      return null;
    }
    const code = /^\d{3}/.exec(text)?.[0];
    if (!code) return null; // not a reply line
    if (text[3] === '-') {
      this.open = { code, lines: [line] };
      return null;
    }
    return { code, lines: [line] };
  }
}

// ---------------------------------------------------------------------------------------------------
// Invariant bookkeeping.

class Violations {
  private readonly kinds = new Map<string, { count: number; examples: string[] }>();

  add(kind: string, detail: string): void {
    const k = this.kinds.get(kind) ?? { count: 0, examples: [] };
    k.count++;
    if (k.examples.length < 3) k.examples.push(detail);
    this.kinds.set(kind, k);
  }

  get total(): number {
    let n = 0;
    for (const k of this.kinds.values()) n += k.count;
    return n;
  }

  summary(): string[] {
    return [...this.kinds.entries()].map(([kind, k]) => `${kind}: ${k.count}x, e.g.\n    ${k.examples.join('\n    ')}`);
  }
}

interface Stats {
  lines: number;
  sessions: number;
  active: number;
  passive: number;
  ok: number;
  failed: number;
  late: number;
  stale: number;
  closes: number;
  framingErrors: number;
  maxQueued: number;
  maxPending: number;
}

const newStats = (): Stats => ({
  lines: 0,
  sessions: 0,
  active: 0,
  passive: 0,
  ok: 0,
  failed: 0,
  late: 0,
  stale: 0,
  closes: 0,
  framingErrors: 0,
  maxQueued: 0,
  maxPending: 0,
});

// ---------------------------------------------------------------------------------------------------
// Addresses and options.

const MIXED: SessionAddresses = { ...V4, client: '2001:db8::10', originalServer: '2001:db8::1', clientFamily: 6 };

// ---------------------------------------------------------------------------------------------------
// The splitter, checked against the bytes it was given.

class StreamCheck {
  private readonly splitter = new LineSplitter();
  /** Bytes pushed and not yet returned as a line. */
  private rest: Buffer = Buffer.alloc(0);

  constructor(private readonly report: (kind: string, detail: string) => void) {}

  push(chunk: Buffer): LineEvent[] {
    let events: LineEvent[];
    try {
      events = this.splitter.push(chunk);
    } catch (e) {
      this.report('exception', `LineSplitter.push(${show(chunk)}): ${String(e)}`);
      return [{ kind: 'error', error: 'too-long' }];
    }
    this.rest = Buffer.concat([this.rest, chunk]);
    let failed = false;
    for (const ev of events) {
      if (failed) this.report('splitter-event-after-error', show(this.rest));
      if (ev.kind === 'line') {
        const l = ev.line;
        if (!Buffer.isBuffer(l) || !this.rest.subarray(0, l.length).equals(l)) {
          this.report('splitter-changed-bytes', `${show(l)} is not the start of ${show(this.rest)}`);
          this.rest = Buffer.alloc(0);
          continue;
        }
        if (l.length > MAX_LINE_BYTES) this.report('splitter-line-over-500', `${l.length} bytes: ${show(l)}`);
        if (l.indexOf(0x0a) !== l.length - 1) this.report('splitter-not-one-line', show(l));
        if (l.includes(0)) this.report('splitter-passed-nul', show(l));
        this.rest = this.rest.subarray(l.length);
      } else {
        failed = true;
        const nl = this.rest.indexOf(0x0a);
        const seg = nl === -1 ? this.rest : this.rest.subarray(0, nl + 1);
        const nul = seg.subarray(0, MAX_LINE_BYTES).includes(0);
        const long = nl === -1 ? seg.length >= MAX_LINE_BYTES : seg.length > MAX_LINE_BYTES;
        if (ev.error === 'nul' ? !nul : nul || !long) this.report('splitter-unjustified-error', `${ev.error} on ${show(seg)}`);
      }
    }
    if (!failed) {
      if (this.rest.includes(0x0a)) this.report('splitter-kept-a-whole-line', show(this.rest));
      if (this.rest.length >= MAX_LINE_BYTES) this.report('splitter-buffered-500', `${this.rest.length} bytes`);
      if (this.rest.includes(0)) this.report('splitter-kept-nul', show(this.rest));
      if (this.splitter.buffered !== this.rest.length) this.report('splitter-buffered-count', `${this.splitter.buffered} != ${this.rest.length}`);
    }
    return events;
  }
}

// ---------------------------------------------------------------------------------------------------
// One session under test: the machine, a splitter per direction, and a model of what it may do.

interface Outstanding {
  id: number;
  side: Side;
  negotiation: Negotiation;
  /** Emitted by the last call: answering now is answering "immediately". */
  fresh: boolean;
}

interface FirstCheck {
  type: 'toServer' | 'toClient';
  /** Why `data` is wrong, or null. */
  problem: (data: Buffer) => string | null;
  what: string;
}

class Probe {
  readonly m: FtpControl;
  lines = 0;
  closed = false;
  framingError = false;
  /** Answer negotiations on its own (off while a flood session fills the queue). */
  autoAnswer = true;
  /** What reached the server and has no reply yet: the fake server answers it (ordinarySession). */
  readonly serverInbox: Buffer[] = [];
  private readonly streams: Record<Side, StreamCheck>;
  private readonly outstanding: Outstanding[] = [];
  private readonly answered: number[] = [];
  private readonly seenIds = new Set<number>();
  private readonly shadow: Record<Side, Buffer[]> = { client: [], server: [] };
  private readonly framer = new ReplyFramer();
  private readonly fed: Record<Side, Set<string>> = { client: new Set(), server: new Set() };
  private readonly forwarded = { PASV: 0, EPSV: 0 };
  private readonly passiveCount = { PASV: 0, EPSV: 0 };

  constructor(
    private readonly v: Violations,
    private readonly stats: Stats,
    private readonly label: string,
    private readonly addr: SessionAddresses,
    private readonly opts: ControlOptions,
    private readonly rng: Rng,
  ) {
    this.m = new FtpControl(7, addr, opts);
    const report = (kind: string, detail: string): void => this.violation(kind, detail);
    this.streams = { client: new StreamCheck(report), server: new StreamCheck(report) };
  }

  private violation(kind: string, detail: string): void {
    const a = this.addr === V4 ? 'v4' : this.addr === V6 ? 'v6' : 'mixed';
    this.v.add(kind, `${this.label} line ${this.lines} (${a}${this.opts.anonymousOnly ? ' -A' : ''}): ${detail}`);
  }

  get alive(): boolean {
    return !this.closed && !this.framingError;
  }

  /** Bytes from one side, cut into random chunks, split into lines as src/session.ts does. */
  push(side: Side, data: Buffer): void {
    const r = this.rng;
    const mode = r.int(5);
    let i = 0;
    while (i < data.length && !this.framingError) {
      const size = mode === 0 ? data.length : mode === 1 ? 1 : mode === 2 ? r.range(1, 8) : mode === 3 ? r.range(1, 64) : r.range(1, 700);
      const chunk = data.subarray(i, i + size);
      i += chunk.length;
      for (const ev of this.streams[side].push(chunk)) {
        if (ev.kind === 'line') {
          this.deliver(side, ev.line);
          if (this.autoAnswer) this.maybeAnswer(0.3, 0.1);
        } else {
          // As the session does: tell the machine and stop reading this session.
          this.stats.framingErrors++;
          const wasClosed = this.closed;
          const out = this.call(`lineError(${side}, ${ev.error})`, () => this.m.lineError(side, ev.error));
          if (!wasClosed && out.at(-1)?.type !== 'close') this.violation('close-missing-after-line-error', ev.error);
          if (!wasClosed) this.checkOutput('error', [], out, null);
          this.framingError = true;
          break;
        }
      }
      if (this.autoAnswer) this.maybeAnswer(0.3, 0.15);
    }
  }

  /** Answer outstanding negotiations with probability pFresh (just emitted) or pLate (older ones). */
  maybeAnswer(pFresh: number, pLate: number): void {
    for (const o of [...this.outstanding]) {
      if (this.rng.chance(o.fresh ? pFresh : pLate)) this.answer(o, this.randomResult());
      else o.fresh = false;
    }
    if (this.rng.chance(0.01)) this.staleAnswer();
  }

  randomResult(): NegotiationResult {
    return this.rng.chance(0.8) ? { ok: true, proxyPort: this.rng.range(49152, 65534) } : { ok: false, error: 'Operation not permitted' };
  }

  /** A result for an id that is not outstanding must change nothing. */
  staleAnswer(): void {
    this.stats.stale++;
    const id = this.answered.length > 0 && this.rng.chance(0.7) ? this.rng.pick(this.answered) : this.rng.pick([0, -1, 2 ** 31, Number.NaN, 1e9]);
    const out = this.call(`negotiationDone(stale ${id})`, () => this.m.negotiationDone(id, this.randomResult()));
    if (out.length > 0) this.violation('stale-answer-had-effect', `id ${id}: ${out.map((a) => a.type).join(',')}`);
    this.afterCall();
  }

  private deliver(side: Side, line: Buffer): void {
    this.lines++;
    this.stats.lines++;
    this.fed[side].add(latin1(line));
    const wasClosed = this.closed;
    const blocked = side === 'client' ? this.m.clientBlocked : this.m.serverBlocked;
    const out = this.call(`${side}Line(${show(line)})`, () => (side === 'client' ? this.m.clientLine(line) : this.m.serverLine(line)));
    if (!wasClosed) {
      if (blocked) {
        if (out.length > 0) this.violation('queue-line-had-output', `${side} ${show(line)}: ${out.map((a) => a.type).join(',')}`);
        this.shadow[side].push(line);
      } else {
        this.checkOutput(side, [line], out, null);
      }
    }
    this.afterCall();
  }

  answer(o: Outstanding, result: NegotiationResult): void {
    this.outstanding.splice(this.outstanding.indexOf(o), 1);
    this.answered.push(o.id);
    if (!o.fresh) this.stats.late++;
    if (result.ok) this.stats.ok++;
    else this.stats.failed++;
    const wasClosed = this.closed;
    const queuedBefore = this.m.queuedLines;
    const out = this.call(`negotiationDone(${o.id}, ${JSON.stringify(result)})`, () => this.m.negotiationDone(o.id, result));
    if (wasClosed) return;
    const shadow = this.shadow[o.side];
    const k = queuedBefore - this.m.queuedLines;
    if (k < 0 || k > shadow.length) {
      this.violation('queue-accounting', `${o.side} drain took ${k} lines of ${shadow.length}`);
      shadow.length = 0;
      return;
    }
    const processed = shadow.splice(0, k);
    this.checkOutput(o.side, processed, out, this.firstCheck(o, result));
    this.afterCall();
  }

  /** What must come first out of negotiationDone for this result. */
  private firstCheck(o: Outstanding, result: NegotiationResult): FirstCheck | null {
    const n = o.negotiation;
    const { proxy, originalServer, serverFamily } = this.addr;
    if (!result.ok) {
      // The passive refusal replaces the held reply at once; the active one is an ordinary local reply.
      if (n.kind !== 'passive') return null;
      return { type: 'toClient', what: '425 after a failed passive negotiation', problem: (d) => (latin1(d).startsWith('425 ') ? null : 'not a 425') };
    }
    const port = result.proxyPort;
    if (n.kind === 'passthrough') return null; // never made without TLS (checkNegotiation)
    if (n.kind === 'active') {
      return {
        type: 'toServer',
        what: `${n.command} rewrite to ${proxy} port ${port}`,
        problem: (d) => {
          const { verb, arg } = commandOf(d);
          if (verb !== n.command || !latin1(d).startsWith(`${n.command} `) || !latin1(d).endsWith('\r\n')) return 'wrong command';
          const p = n.command === 'PORT' ? parsePortArg(arg) : parseEprtArg(arg);
          if (!p.ok) return p.reason;
          if (p.value.address !== proxy || p.value.port !== port) return `names ${p.value.address} port ${p.value.port}`;
          if ('family' in p.value && p.value.family !== serverFamily) return `EPRT family ${p.value.family}`;
          return null;
        },
      };
    }
    return {
      type: 'toClient',
      what: `${n.command} reply naming ${originalServer} port ${port}`,
      problem: (d) => {
        const text = latin1(d);
        if (!text.startsWith(n.command === 'PASV' ? '227 ' : '229 ') || !text.endsWith('\r\n')) return 'wrong reply code';
        if (n.command === 'PASV') {
          const p = parse227(text);
          if (!p.ok) return p.reason;
          return p.value.address === originalServer && p.value.port === port ? null : `names ${p.value.address} port ${p.value.port}`;
        }
        const p = parse229(text);
        if (!p.ok) return p.reason;
        return p.value === port ? null : `names port ${p.value}`;
      },
    };
  }

  /** Every call into the machine goes through here. */
  private call(what: string, f: () => Action[]): Action[] {
    let out: Action[];
    try {
      out = f();
    } catch (e) {
      this.violation('exception', `${what}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      return [];
    }
    if (!Array.isArray(out)) {
      this.violation('not-an-action-list', what);
      return [];
    }
    if (this.closed && out.length > 0) this.violation('action-after-close', `${what} -> ${out.map((a) => a.type).join(',')}`);
    out.forEach((a, i) => {
      if (a.type === 'close') {
        if (i !== out.length - 1) this.violation('close-not-last', `${what} -> ${out.map((x) => x.type).join(',')}`);
        this.closed = true;
      }
      if (a.type === 'toServer' && Buffer.isBuffer(a.data)) this.serverInbox.push(a.data);
      if (a.type === 'toServer' || a.type === 'toClient') {
        if (!Buffer.isBuffer(a.data)) this.violation('payload-not-a-buffer', what);
        else if (a.data.length > MAX_LINE_BYTES) this.violation('payload-over-500', `${a.type} of ${a.data.length} bytes after ${what}: ${show(a.data)}`);
        else if (a.data.indexOf(0x0a) !== a.data.length - 1) this.violation('payload-not-one-line', `${a.type} after ${what}: ${show(a.data)}`);
      }
      if (a.type === 'log' && !(Number.isInteger(a.level) && a.level >= 0 && a.level <= 7 && typeof a.message === 'string')) {
        this.violation('bad-log-action', JSON.stringify(a));
      }
    });
    if (out.some((a) => a.type === 'close')) this.stats.closes++;
    return out;
  }

  /**
   * The actions that processing `processed` (in order) produced on `side`. `first`: what the first
   * toServer/toClient must be (a negotiation's outcome).
   */
  private checkOutput(side: Side | 'error', processed: Buffer[], out: Action[], first: FirstCheck | null): void {
    const completed = side === 'server' ? processed.map((l) => this.framer.feed(l)) : [];
    let pendingFirst = first;
    let negotiations = 0;
    for (const a of out) {
      switch (a.type) {
        case 'toServer':
        case 'toClient':
          if (!Buffer.isBuffer(a.data)) break;
          if (pendingFirst?.type === a.type) {
            const why = pendingFirst.problem(a.data);
            if (why) this.violation('negotiation-outcome-wrong', `${pendingFirst.what}: ${why}: ${show(a.data)}`);
            pendingFirst = null;
          } else if (a.type === 'toServer') {
            this.checkForwarded(a.data);
          } else {
            this.checkToClient(a.data);
          }
          break;
        case 'negotiate':
          negotiations++;
          if (negotiations > 1) this.violation('negotiate-twice-in-one-call', out.map((x) => x.type).join(','));
          this.checkNegotiation(a, side, processed.at(-1), completed.at(-1) ?? null);
          break;
        case 'log':
        case 'close':
          break;
        default:
          this.violation('unknown-action', JSON.stringify(a));
      }
    }
    if (pendingFirst && !this.closed) this.violation('negotiation-outcome-missing', pendingFirst.what);
  }

  private checkForwarded(data: Buffer): void {
    if (!this.fed.client.has(latin1(data))) {
      this.violation('forwarded-not-a-client-line', show(data));
      return;
    }
    const { verb, arg } = commandOf(data);
    const families = this.addr.clientFamily === this.addr.serverFamily;
    if (verb === 'PORT' || verb === 'EPRT') this.violation('forwarded-port-unrewritten', show(data));
    if (verb === 'AUTH') this.violation('forwarded-auth', show(data));
    if (this.opts.anonymousOnly && verb === 'USER' && !/^(ftp|anonymous)$/i.test(arg)) this.violation('forwarded-user-under-A', show(data));
    if ((verb === 'PASV' || verb === 'EPSV') && !families) this.violation('forwarded-across-families', show(data));
    if (verb === 'PASV' && this.addr.clientFamily === 6) this.violation('forwarded-pasv-in-ipv6', show(data));
    if (verb === 'PASV' || verb === 'EPSV') this.forwarded[verb]++;
  }

  private checkToClient(data: Buffer): void {
    const text = latin1(data);
    if (this.fed.server.has(text)) return; // relayed unchanged
    if (!/^[1-5]\d\d [\x20-\x7e]*\r\n$/.test(text)) this.violation('made-up-reply-malformed', `${data.length} bytes: ${show(data)}`);
  }

  private checkNegotiation(a: NegotiateAction, side: Side | 'error', trigger: Buffer | undefined, reply: Reply | null): void {
    const n = a.negotiation;
    // The fuzzed sessions run without TLS: a pass-through pinhole can only come from a broken machine.
    if (n.kind === 'passthrough') {
      this.violation('negotiate-passthrough-without-tls', JSON.stringify(n));
      return;
    }
    const port = n.kind === 'active' ? n.clientPort : n.serverPort;
    const what = `${JSON.stringify(n)} from ${trigger ? show(trigger) : 'no line'}`;
    if (!Number.isInteger(port) || port < MIN_PORT || port > 65535) this.violation('negotiate-port-out-of-range', what);
    if (!Number.isInteger(a.id) || this.seenIds.has(a.id)) this.violation('negotiate-id-reused', `id ${a.id}`);
    this.seenIds.add(a.id);
    if (this.addr.clientFamily !== this.addr.serverFamily) this.violation('negotiate-across-families', what);
    if ((n.command === 'PASV' || n.command === 'PORT') && this.addr.clientFamily === 6) this.violation('negotiate-ipv4-only-command-in-ipv6', what);
    const nSide: Side = n.kind === 'active' ? 'client' : 'server';
    if (side !== nSide) this.violation('negotiate-from-the-wrong-side', `${what} on ${side}`);
    if (this.outstanding.some((o) => o.side === nSide)) this.violation('negotiate-while-one-is-outstanding', what);
    if (n.kind === 'active') {
      this.stats.active++;
      const why = activeProblem(n, trigger);
      if (why) this.violation('negotiate-without-a-valid-command', `${what}: ${why}`);
    } else {
      this.stats.passive++;
      const why = passiveProblem(n, reply);
      if (why) this.violation('negotiate-without-a-valid-reply', `${what}: ${why}`);
      if (n.command === 'PASV' || n.command === 'EPSV') {
        if (this.passiveCount[n.command] >= this.forwarded[n.command]) this.violation('negotiate-without-its-command', `${what}: no ${n.command} left to answer`);
        this.passiveCount[n.command]++;
      }
    }
    this.outstanding.push({ id: a.id, side: nSide, negotiation: n, fresh: true });
  }

  /** Bounds and bookkeeping after every call. */
  private afterCall(): void {
    const q = this.m.queuedLines;
    const p = this.m.pendingCommands;
    this.stats.maxQueued = Math.max(this.stats.maxQueued, q);
    this.stats.maxPending = Math.max(this.stats.maxPending, p);
    if (p > PENDING_LIMIT) this.violation('pending-over-max', `${p} commands without a reply (limit ${PENDING_LIMIT})`);
    if (q >= MAX_QUEUED) this.violation('queue-over-bound', `${q} lines queued`);
    const expected = this.shadow.client.length + this.shadow.server.length;
    if (q !== expected) {
      this.violation('queue-not-what-was-fed', `queuedLines ${q}, fed while blocked ${expected}`);
      this.shadow.client.length = 0;
      this.shadow.server.length = 0;
    }
    if (!this.closed) {
      const c = this.outstanding.some((o) => o.side === 'client');
      const s = this.outstanding.some((o) => o.side === 'server');
      if (this.m.clientBlocked !== c || this.m.serverBlocked !== s) {
        this.violation('blocked-flags-wrong', `clientBlocked ${this.m.clientBlocked} (expected ${c}), serverBlocked ${this.m.serverBlocked} (expected ${s})`);
      }
    }
  }

  /** Answer everything still outstanding; a live machine must then have nothing queued. */
  finish(): void {
    for (let guard = 0; this.outstanding.length > 0 && guard < 5000; guard++) this.answer(this.rng.pick(this.outstanding), this.randomResult());
    if (this.outstanding.length > 0) this.violation('negotiations-never-end', `${this.outstanding.length} outstanding`);
    if (!this.closed && this.m.queuedLines !== 0) this.violation('queue-left-undrained', `${this.m.queuedLines} lines`);
    if (this.closed) {
      // Nothing may come out of a closed machine, whatever it is given.
      this.call('clientLine after close', () => this.m.clientLine(bytes('PORT 192,168,1,10,156,187\r\n')));
      this.call('serverLine after close', () => this.m.serverLine(bytes('227 (198,51,100,21,195,80)\r\n')));
      this.call('lineError after close', () => this.m.lineError('server', 'nul'));
      for (const id of this.answered.slice(-2)) this.call('negotiationDone after close', () => this.m.negotiationDone(id, { ok: true, proxyPort: 50000 }));
    }
    this.stats.sessions++;
  }
}

function activeProblem(n: Extract<Negotiation, { kind: 'active' }>, trigger: Buffer | undefined): string | null {
  if (!trigger) return 'no client line was processed';
  const { verb, arg } = commandOf(trigger);
  if (verb !== n.command) return `the line's verb is ${JSON.stringify(verb)}`;
  const p = verb === 'PORT' ? parsePortArg(arg) : parseEprtArg(arg);
  if (!p.ok) return `the parser refuses it: ${p.reason}`;
  if (p.value.port !== n.clientPort) return `the line names port ${p.value.port}`;
  if (p.value.port < MIN_PORT) return `port ${p.value.port} < ${MIN_PORT}`;
  return null;
}

function passiveProblem(n: Extract<Negotiation, { kind: 'passive' }>, reply: Reply | null): string | null {
  if (!reply) return 'the last server line completed no reply';
  const want = n.command === 'PASV' ? '227' : '229';
  if (reply.code !== want) return `the reply is a ${reply.code}`;
  if (reply.lines.length > MAX_REPLY_LINES) return `the reply has ${reply.lines.length} lines`;
  const text = latin1(Buffer.concat(reply.lines));
  const p = n.command === 'PASV' ? parse227(text) : parse229(text);
  if (!p.ok) return `the parser refuses ${show(text)}: ${p.reason}`;
  const port = typeof p.value === 'number' ? p.value : p.value.port;
  if (port !== n.serverPort) return `the reply names port ${port}`;
  if (port < MIN_PORT) return `port ${port} < ${MIN_PORT}`;
  return null;
}

// ---------------------------------------------------------------------------------------------------
// Mutations.

const SPECIAL_BYTES = [0x00, 0x0d, 0x0a, 0xff, 0xf4, 0xf2, 0x80, 0xc3, 0x20, 0x09, 0x2c, 0x7c, 0x28, 0x29, 0x2d, 0x30, 0x39, 0x7f];
const IAC_SEQUENCES = ['\xff\xf4', '\xff\xf2', '\xff\xf4\xff\xf2', '\xff\xfb\x01', '\xff\xfd\x03', '\xff\xff', '\xff', '\xff\xf1', '\xff\xfa\x18\x01\xff\xf0'];
const BAD_UTF8 = ['\xc3\x28', '\xa0\xa1', '\xe2\x28\xa1', '\xe2\x82', '\xf0\x28\x8c\xbc', '\xc0\xaf', '\xed\xa0\x80', '\xfe', '\xff\xfe', '\xf8\x88\x80\x80\x80'];
const NUMBERS = [
  '0', '1', '3', '4', '20', '21', '255', '256', '999', '1023', '1024', '49152', '65535', '65536',
  '99999999999999999999', '-1', '-0', '-65535', '+4', '007', '00000000000000000001', '1e3', '0x10', '1.5',
  ' 4', '4 ', '', '4294967297', '18446744073709551617', 'NaN', 'Infinity',
];
const IPV6_LITERALS = [
  '::1', '::', '2001:db8::10', '2001:DB8:0:0:0:0:0:10', '::ffff:192.168.1.10', '::ffff:c0a8:10a', 'fe80::1%eth0',
  '[2001:db8::1]', '1:2:3:4:5:6:7:8:9', '2001:db8:::1', '::ffff:999.1.1.1', 'fffff::1', '1::2::3', ':',
];
const IPV4_LITERALS = ['192.168.1.10', '0.0.0.0', '255.255.255.255', '256.1.2.3', '01.2.3.4', '1.2.3', '1.2.3.4.5', '10,0,0,1'];
const EOLS = ['', '\r', '\n', '\r\r\n', '\n\r\n', '\r\n\r\n', '\n\n', '\r\n'];
const FIELD = /[^ ,|()!\r\n]+/g;

type Mutation = (r: Rng, body: Buffer, eol: Buffer, other: Buffer) => Buffer;

const concat = (...parts: (Buffer | string)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? bytes(p) : p)));
const insertAt = (b: Buffer, i: number, x: Buffer | string): Buffer => concat(b.subarray(0, i), x, b.subarray(i));
const anywhere = (r: Rng, b: Buffer): number => r.int(b.length + 1);

/** A random match of `re` in the body, or an empty span at a random place. */
function span(r: Rng, body: Buffer, re: RegExp): [number, number] {
  const matches = [...latin1(body).matchAll(re)];
  if (matches.length === 0) {
    const i = anywhere(r, body);
    return [i, i];
  }
  const m = r.pick(matches);
  return [m.index, m.index + m[0].length];
}

const replaceSpan = (body: Buffer, [s, e]: [number, number], x: Buffer | string): Buffer => concat(body.subarray(0, s), x, body.subarray(e));

/** Fill for an overlong field: letters, digits, high bytes, mixed. */
function filler(r: Rng, n: number, kind = r.int(5)): Buffer {
  const b = Buffer.alloc(Math.max(0, n));
  for (let i = 0; i < b.length; i++) {
    const any = r.range(1, 255);
    b[i] = kind === 0 ? 0x41 : kind === 1 ? 0x39 : kind === 2 ? 0xe9 : kind === 3 ? r.range(0x21, 0x7e) : any === 0x0a ? 0x20 : any;
  }
  return b;
}

const MUTATIONS: Record<string, Mutation> = {
  bitflip: (r, b) => {
    const c = Buffer.from(b);
    for (let n = r.range(1, 3); n > 0 && c.length > 0; n--) {
      const i = r.int(c.length);
      c[i] = c[i]! ^ (1 << r.int(8));
    }
    return c;
  },
  insertByte: (r, b) => insertAt(b, anywhere(r, b), Buffer.from([r.chance(0.5) ? r.range(1, 255) : r.pick(SPECIAL_BYTES)])),
  deleteBytes: (r, b) => {
    const s = r.int(b.length + 1);
    return concat(b.subarray(0, s), b.subarray(s + r.range(1, 4)));
  },
  truncate: (r, b) => b.subarray(0, r.int(b.length + 1)),
  duplicateSlice: (r, b) => {
    const s = r.int(b.length + 1);
    const e = Math.min(b.length, s + r.range(1, 12));
    return insertAt(b, e, b.subarray(s, e));
  },
  duplicateLine: (_r, b, eol) => concat(b, eol, b),
  overlong: (r, b, eol) => {
    // One field grows until the line is 440..500 bytes (mostly accepted) or 501..700 (a framing error).
    const [s, e] = span(r, b, FIELD);
    const target = r.chance(0.95) ? r.range(440, 500) : r.range(501, 700);
    return replaceSpan(b, [s, e], filler(r, target - (b.length - (e - s)) - eol.length));
  },
  nul: (r, b) => insertAt(b, anywhere(r, b), '\0'),
  bareCr: (r, b) => insertAt(b, anywhere(r, b), '\r'),
  telnet: (r, b) => insertAt(b, r.chance(0.6) ? 0 : anywhere(r, b), r.pick(IAC_SEQUENCES)),
  badUtf8: (r, b) => insertAt(b, anywhere(r, b), r.pick(BAD_UTF8)),
  number: (r, b) => replaceSpan(b, span(r, b, /\d+/g), r.pick(NUMBERS)),
  negative: (r, b) => {
    const sp = span(r, b, /\d+/g);
    return replaceSpan(b, sp, `-${latin1(b.subarray(sp[0], sp[1])) || '1'}`);
  },
  commas: (r, b) => {
    const sp = span(r, b, /,/g);
    return replaceSpan(b, sp, r.pick([',,', '', ', ,', ',-', ',,,,', ' ,']));
  },
  ipv6: (r, b) => replaceSpan(b, span(r, b, r.chance(0.5) ? /\d+[.,]\d+[.,]\d+[.,]\d+/g : FIELD), r.pick(IPV6_LITERALS)),
  ipv4: (r, b) => replaceSpan(b, span(r, b, FIELD), r.pick(IPV4_LITERALS)),
  delimiter: (r, b) => {
    const from = r.pick(['|', ',', '(', ')', ' ', '!']);
    return bytes(latin1(b).split(from).join(String.fromCharCode(r.chance(0.7) ? r.range(0x21, 0x7e) : r.range(1, 255))));
  },
  caseFlip: (r, b) => bytes([...latin1(b)].map((c) => (r.chance(0.5) ? (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()) : c)).join('')),
  splice: (r, b, _eol, other) => concat(b.subarray(0, r.int(b.length + 1)), other.subarray(r.int(other.length))),
  field: (r, b) => replaceSpan(b, span(r, b, FIELD), r.pick([...NUMBERS, ...IPV6_LITERALS, 'ALL', 'x', '|||', '(', ')', '-'])),
  randomBytes: (r, b) => filler(r, b.length, 4),
};
/** Mutations that change the line ending too (the others keep it). */
const EOL_MUTATIONS: Record<string, (r: Rng, line: Buffer) => Buffer> = {
  eol: (r, line) => {
    const { body } = splitEol(line);
    return concat(body, r.pick(EOLS));
  },
  truncateAll: (r, line) => line.subarray(0, r.int(line.length + 1)),
};
const MUTATION_NAMES = [...Object.keys(MUTATIONS), ...Object.keys(EOL_MUTATIONS)];

function splitEol(line: Buffer): { body: Buffer; eol: Buffer } {
  const m = /\r?\n$/.exec(latin1(line));
  const n = m ? m[0].length : 0;
  return { body: line.subarray(0, line.length - n), eol: line.subarray(line.length - n) };
}

/**
 * A mutation for the random pass. The ones that end a session (a NUL, a line over 500 bytes) are rarer
 * there than the others, or few sessions would live long enough to get anywhere.
 */
function randomMutation(r: Rng): string {
  for (;;) {
    const name = r.pick(MUTATION_NAMES);
    if (name !== 'nul' || r.chance(0.15)) return name;
  }
}

function mutate(r: Rng, line: Buffer, other: Buffer, name = randomMutation(r)): Buffer {
  const whole = EOL_MUTATIONS[name];
  if (whole) return whole(r, line);
  const { body, eol } = splitEol(line);
  const f = MUTATIONS[name];
  if (!f) throw new Error(`no mutation ${name}`);
  return concat(f(r, body, eol, other), eol);
}

// ---------------------------------------------------------------------------------------------------
// Generated lines.

function num(r: Rng): string {
  return r.chance(0.6) ? String(r.int(256)) : r.pick(NUMBERS);
}

function hostPortNumbers(r: Rng): string {
  const count = r.chance(0.8) ? 6 : r.pick([0, 1, 4, 5, 7, 8, 12]);
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push(i >= 4 && r.chance(0.5) ? String(r.range(0, 255)) : num(r));
  return parts.map((p, i) => (i === 0 ? p : (r.chance(0.9) ? ',' : r.pick([', ', ',,', ' ,', ';'])) + p)).join('');
}

function portNumber(r: Rng): string {
  return r.chance(0.5) ? String(r.range(0, 70000)) : r.pick(NUMBERS);
}

const EOL = (r: Rng): string => (r.chance(0.9) ? '\r\n' : r.pick(['\n', '\r\r\n']));

function gen227(r: Rng): string {
  const text = `${r.pick(['Entering Passive Mode ', '', '=', 'ok '])}${r.chance(0.7) ? `(${hostPortNumbers(r)})` : hostPortNumbers(r)}`;
  return r.chance(0.7) ? `227 ${text}${EOL(r)}` : `227-${r.pick(['Passive', ''])}\r\n${r.chance(0.5) ? ' ' : '227-'}${text}\r\n227 ${r.pick(['OK', ''])}${EOL(r)}`;
}

function gen229(r: Rng): string {
  const d = r.chance(0.7) ? '|' : String.fromCharCode(r.range(0x21, 0x7e));
  const body = r.chance(0.8) ? `(${d}${d}${d}${portNumber(r)}${d})` : `(${r.pick(['||', '||||', '|1|2|', ''])}${portNumber(r)}${r.pick(['|', '||', ''])})`;
  return r.chance(0.75) ? `229 Entering Extended Passive Mode ${body}${EOL(r)}` : `229-Extended\r\n ${body}\r\n229 Ok${EOL(r)}`;
}

const GENERATORS: Record<Side, ((r: Rng) => string)[]> = {
  client: [
    (r) => `${r.pick(['PORT', 'port', 'Port', 'PORT '])} ${hostPortNumbers(r)}${EOL(r)}`,
    (r) => {
      const d = r.pick(['|', '|', '|', '!', '#', '1', ' ', '\xff', '||', '']);
      const af = r.pick(['1', '2', '1', '2', '3', '0', '', '01', 'x']);
      const address = r.pick([...IPV4_LITERALS, ...IPV6_LITERALS, '']);
      return `${r.pick(['EPRT', 'eprt'])} ${d}${af}${d}${address}${d}${portNumber(r)}${d}${r.chance(0.1) ? d : ''}${EOL(r)}`;
    },
    (r) => `LPRT ${r.pick(['4,4', '6,16', '4,16'])},${hostPortNumbers(r)}${EOL(r)}`,
    (r) => `${r.pick(['PASV', 'EPSV', 'EPSV ALL', 'EPSV 2', 'LPSV', 'PASV ' + num(r)])}${EOL(r)}`,
  ],
  server: [
    gen227,
    gen229,
    (r) => `${r.pick(['1', '2', '3', '4', '5'])}${r.range(0, 5)}${r.range(0, 9)}${r.pick([' ', '-', ''])}${r.pick(['ok', 'text', '', 'x'.repeat(r.range(0, 80))])}${EOL(r)}`,
  ],
};

/** A line of random bytes: no NUL, no LF inside (those come from the mutations, at a lower rate). */
function randomLine(r: Rng): Buffer {
  const b = filler(r, r.range(0, 120), r.pick([3, 4, 4]));
  return concat(b, r.chance(0.8) ? '\r\n' : r.pick(['\n', '\r', '']));
}

/** What a server might answer to this command (it may hold several lines: pipelined seeds). */
function replyTo(r: Rng, line: Buffer): Buffer[] {
  const codes = (...cs: string[]): Buffer => r.pick(cs.flatMap((c) => SERVER_BY_CODE.get(c) ?? []));
  return linesOf(line).flatMap((l): Buffer[] => {
    const { verb, arg } = commandOf(l);
    switch (verb) {
      case 'PASV':
        if (r.chance(0.15)) return [codes('425', '500', '502', '530')];
        return [r.chance(0.6) ? codes('227') : bytes(gen227(r))];
      case 'EPSV':
        if (arg.toUpperCase() === 'ALL') return [codes('200')];
        if (r.chance(0.15)) return [codes('425', '500', '502')];
        return [r.chance(0.6) ? codes('229') : bytes(gen229(r))];
      case 'PORT':
      case 'EPRT':
      case 'LPRT':
        return [codes('200', '500', '501')];
      case 'USER':
        return [codes('331', '230', '530')];
      case 'PASS':
        return [codes('230', '530')];
      case 'RETR':
      case 'STOR':
      case 'APPE':
      case 'LIST':
      case 'NLST':
      case 'MLSD':
        return r.chance(0.8) ? [codes('150', '125'), codes('226', '426', '451')] : [codes('425', '550')];
      case 'ABOR':
        return [codes('426', '225', '226')];
      case 'AUTH':
        return []; // the proxy answers it
      case 'QUIT':
        return [codes('221')];
      case 'FEAT':
      case 'STAT':
        return [codes('211')];
      case 'HELP':
        return [codes('214')];
      default:
        return [codes('200', '250', '257', '215', '213', '350', '500', '502', '550')];
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// The random pass.

function newProbe(v: Violations, stats: Stats, label: string, r: Rng, addr?: SessionAddresses): Probe {
  const a = addr ?? (r.chance(0.7) ? V4 : r.chance(0.67) ? V6 : MIXED);
  const opts: ControlOptions = { anonymousOnly: r.chance(0.2), debug: r.chance(0.3), firewallName: 'nftables' };
  return new Probe(v, stats, label, a, opts, r);
}

/** Usually a seed as it is (so dialogs make progress), sometimes mutated. */
function maybeMutated(r: Rng, seed: Buffer, p: number): Buffer {
  return r.chance(p) ? mutate(r, seed, r.pick(r.chance(0.5) ? CLIENT_SEEDS : SERVER_SEEDS)) : seed;
}

function ordinarySession(p: Probe, r: Rng, budget: number): void {
  if (r.chance(0.9)) p.push('server', maybeMutated(r, r.pick(SERVER_BY_CODE.get('220') ?? SERVER_SEEDS), 0.1));
  while (p.alive && p.lines < budget) {
    const x = r.int(100);
    const client = (line: Buffer): void => p.push('client', line);
    if (x < 50) {
      // Commands, pipelined 1..4 deep in one burst; mostly as they are, so sessions get somewhere.
      const burst: Buffer[] = [];
      for (let depth = r.range(1, r.chance(0.7) ? 1 : 4); depth > 0; depth--) {
        const x2 = r.int(100);
        burst.push(maybeMutated(r, r.pick(x2 < 25 ? PASSIVE_SEEDS : x2 < 35 ? ACTIVE_SEEDS : CLIENT_SEEDS), 0.15));
      }
      client(Buffer.concat(burst));
    } else if (x < 63) {
      client(mutate(r, r.pick(CLIENT_SEEDS), r.pick([...CLIENT_SEEDS, ...SERVER_SEEDS])));
    } else if (x < 73) {
      const line = bytes(r.pick(GENERATORS.client)(r));
      client(r.chance(0.2) ? mutate(r, line, r.pick(CLIENT_SEEDS)) : line);
    } else if (x < 76) {
      client(randomLine(r));
    } else if (x < 86) {
      // The server says something nobody asked for.
      const y = r.int(3);
      const line = y === 0 ? mutate(r, r.pick(SERVER_SEEDS), r.pick(SERVER_SEEDS)) : y === 1 ? bytes(r.pick(GENERATORS.server)(r)) : randomLine(r);
      p.push('server', line);
    }
    // The server answers some or all of what reached it, in one burst (pipelined replies).
    if (p.alive && p.serverInbox.length > 0 && r.chance(0.7)) {
      const n = r.chance(0.8) ? p.serverInbox.length : r.range(1, p.serverInbox.length);
      const replies = p.serverInbox.splice(0, n).flatMap((cmd) => replyTo(r, cmd).map((reply) => maybeMutated(r, reply, 0.1)));
      if (replies.length > 0) p.push('server', Buffer.concat(replies));
    }
  }
}

/** Sessions that push the memory bounds: pipelining without replies, lines queued behind a pinhole. */
function floodSession(p: Probe, r: Rng, kind: number, v: Violations, label: string): void {
  p.push('server', bytes('220 ready\r\n'));
  if (kind === 0) {
    // 1,100 commands and no reply: the machine must give up at MAX_PENDING.
    p.push('client', bytes('NOOP\r\n'.repeat(1100)));
    if (!p.closed) v.add('flood-not-closed', `${label}: ${p.m.pendingCommands} commands pending and the session lives on`);
    return;
  }
  p.autoAnswer = false;
  if (kind === 1) {
    // A PORT in flight, then 1,500 client lines queue behind it.
    p.push('client', bytes('PORT 192,168,1,10,156,187\r\n'));
    const burst: Buffer[] = [];
    for (let i = 0; i < 1500; i++) burst.push(maybeMutated(r, r.pick(CLIENT_SEEDS), 0.05));
    p.push('client', Buffer.concat(burst.flatMap((b) => linesOf(b)).slice(0, 1500)));
  } else {
    // A 227 in flight, then 1,500 server lines queue behind it.
    p.push('client', bytes('PASV\r\n'));
    p.push('server', bytes('227 Entering Passive Mode (198,51,100,21,195,80)\r\n'));
    const burst: Buffer[] = [];
    for (let i = 0; i < 1500; i++) burst.push(r.pick(SERVER_SEEDS));
    p.push('server', Buffer.concat(burst.flatMap((b) => linesOf(b)).slice(0, 1500)));
  }
  if (!p.closed && p.m.queuedLines < 1000) v.add('flood-not-queued', `${label}: only ${p.m.queuedLines} lines queued`);
  p.autoAnswer = true;
}

function runRandomPass(seed: number, v: Violations, stats: Stats): void {
  const minSessions = envInt('FUZZ_SESSIONS', 1000);
  const only = process.env.FUZZ_SESSION ? envInt('FUZZ_SESSION', 0) : null;
  for (let i = only ?? 0; ; i++) {
    if (only !== null ? i > only : (stats.lines >= MIN_LINES * 1.1 && i >= minSessions) || i >= minSessions * 5) break;
    const r = new Rng(mix(seed, i));
    const label = `FUZZ_SEED=0x${seed.toString(16)} FUZZ_SESSION=${i}`;
    const flood = i % 200 === 199;
    const p = newProbe(v, stats, label, r, flood ? V4 : undefined);
    if (flood) floodSession(p, r, Math.floor(i / 200) % 3, v, label);
    else ordinarySession(p, r, r.range(80, 150));
    p.finish();
  }
}

// ---------------------------------------------------------------------------------------------------
// The per-seed pass: every seed, mutated every way, into a fresh logged-in machine.

const REPEATS = 3;

function loggedIn(v: Violations, stats: Stats, label: string, r: Rng, addr: SessionAddresses, anonymousOnly = false): Probe {
  const p = new Probe(v, stats, label, addr, { anonymousOnly, debug: r.chance(0.5), firewallName: 'nftables' }, r);
  p.push('server', bytes('220 ready\r\n'));
  p.push('client', bytes('USER ftp\r\n'));
  p.push('server', bytes('331 password\r\n'));
  p.push('client', bytes('PASS x\r\n'));
  p.push('server', bytes('230 in\r\n'));
  return p;
}

/** One seed variant, one session: what precedes it, the line, and an ordinary exchange after it. */
function trySeedVariant(v: Violations, stats: Stats, label: string, r: Rng, side: Side, original: Buffer, line: Buffer, addr: SessionAddresses, anonymousOnly = false): void {
  const p = loggedIn(v, stats, label, r, addr, anonymousOnly);
  if (side === 'server') {
    const code = latin1(original).slice(0, 3);
    p.push('client', bytes(code === '227' ? 'PASV\r\n' : code === '229' ? 'EPSV\r\n' : 'NOOP\r\n'));
  }
  p.push(side, line);
  p.maybeAnswer(0.5, 0.5);
  p.push(side === 'client' ? 'server' : 'client', bytes(side === 'client' ? '200 ok\r\n' : 'NOOP\r\n'));
  p.push('client', bytes('\r\nNOOP\r\n'));
  p.push('server', bytes('200 NOOP ok\r\n'));
  p.finish();
}

function runSeedPass(v: Violations, stats: Stats): number {
  let variants = 0;
  for (const side of ['client', 'server'] as const) {
    const seeds = side === 'client' ? CLIENT_SEEDS : SERVER_SEEDS;
    seeds.forEach((seed, si) => {
      const at = `${side} seed #${si} ${show(seed)}`;
      const base = mix(SEED_PASS_SEED, si + (side === 'client' ? 0 : 100_000));
      // As it is, in every kind of session.
      for (const [k, addr] of [V4, V6, MIXED].entries()) {
        trySeedVariant(v, stats, `${at} as is`, new Rng(mix(base, 999 + k)), side, seed, seed, addr, k === 0);
        variants++;
      }
      // Every mutation, several times.
      MUTATION_NAMES.forEach((name, mi) => {
        for (let rep = 0; rep < REPEATS; rep++) {
          const r = new Rng(mix(base, mi * REPEATS + rep));
          const line = mutate(r, seed, r.pick(side === 'client' ? SERVER_SEEDS : CLIENT_SEEDS), name);
          trySeedVariant(v, stats, `${at} ${name}#${rep} -> ${show(line)}`, r, side, seed, line, rep === 2 ? V6 : V4);
          variants++;
        }
      });
      // Each field grown so the line is exactly 500 bytes (the longest a side may send), in two fills.
      const { body, eol } = splitEol(seed);
      const fields = [...latin1(body).matchAll(FIELD)];
      fields.forEach((m, fi) => {
        for (const fill of [0, 2]) {
          const r = new Rng(mix(base, 50_000 + fi * 2 + fill));
          const grown = replaceSpan(body, [m.index, m.index + m[0].length], filler(r, MAX_LINE_BYTES - (body.length - m[0].length) - eol.length, fill));
          const line = concat(grown, eol);
          trySeedVariant(v, stats, `${at} field ${fi} grown -> ${show(line)}`, r, side, seed, line, V4);
          variants++;
        }
      });
    });
  }
  return variants;
}

// ---------------------------------------------------------------------------------------------------

function findGc(): (() => void) | null {
  const existing: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof existing === 'function') return existing as () => void;
  try {
    // Node can expose gc() after start-up, to contexts made from then on.
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
}

/** heapUsed, plus `external`: a Buffer's bytes live outside the V8 heap, and a leak of them counts too. */
function memoryInUse(gc: (() => void) | null): number {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

function expectNone(v: Violations, what: string): void {
  expect(v.summary(), `${v.total} invariant violations in ${what}`).toEqual([]);
}

describe('fuzzing the control channel', () => {
  it('keeps every invariant over 100,000+ random, mutated and pipelined lines in 1,000+ sessions', () => {
    const seed = envInt('FUZZ_SEED', DEFAULT_SEED);
    const gc = findGc();
    const v = new Violations();
    const stats = newStats();
    const before = memoryInUse(gc);
    const t0 = performance.now();
    runRandomPass(seed, v, stats);
    const ms = performance.now() - t0;
    const grown = memoryInUse(gc) - before;
    console.log(
      `fuzz: FUZZ_SEED=0x${seed.toString(16)}: ${stats.lines} lines in ${stats.sessions} sessions, ${ms.toFixed(0)} ms; ` +
        `negotiations ${stats.active} active + ${stats.passive} passive (${stats.ok} ok, ${stats.failed} failed, ${stats.late} answered late, ${stats.stale} stale answers); ` +
        `${stats.closes} closes (${stats.framingErrors} framing errors); max queued ${stats.maxQueued}, max pending ${stats.maxPending}; ` +
        `heap+external grew ${(grown / 2 ** 20).toFixed(1)} MiB${gc ? '' : ' (no gc)'}`,
    );
    if (grown > HEAP_SLACK) v.add('heap', `heapUsed + external grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
    if (!process.env.FUZZ_SESSION) {
      // A pass that never reached the interesting states would prove nothing.
      if (stats.lines < MIN_LINES) v.add('coverage', `only ${stats.lines} lines`);
      if (stats.active < 1000 || stats.passive < 1000) v.add('coverage', `only ${stats.active} active and ${stats.passive} passive negotiations`);
      if (stats.late < 500 || stats.failed < 200) v.add('coverage', `only ${stats.late} late and ${stats.failed} failed answers`);
      if (stats.framingErrors < 50 || stats.maxQueued < 1000 || stats.maxPending < PENDING_LIMIT - 1) {
        v.add('coverage', `${stats.framingErrors} framing errors, max queued ${stats.maxQueued}, max pending ${stats.maxPending}`);
      }
    }
    expectNone(v, `the random pass (reproduce with FUZZ_SEED=0x${seed.toString(16)})`);
  });

  it('keeps every invariant for every seed line, mutated every way, in a fresh logged-in session', () => {
    const v = new Violations();
    const stats = newStats();
    const t0 = performance.now();
    const variants = runSeedPass(v, stats);
    console.log(
      `fuzz: per-seed pass: ${CLIENT_SEEDS.length + SERVER_SEEDS.length} seeds x ${MUTATION_NAMES.length} mutations x ${REPEATS} + grown fields: ` +
        `${variants} sessions, ${stats.lines} lines, ${(performance.now() - t0).toFixed(0)} ms; ${stats.active} active + ${stats.passive} passive negotiations`,
    );
    if (stats.active < 100 || stats.passive < 100) v.add('coverage', `only ${stats.active} active and ${stats.passive} passive negotiations`);
    expectNone(v, 'the per-seed pass');
  });

  it('has a seed corpus that covers the protocol', () => {
    const client = CLIENT_SEEDS.map(latin1);
    const server = SERVER_SEEDS.map(latin1);
    const missing: string[] = [];
    const need = (name: string, corpus: string[], re: RegExp): void => {
      if (!corpus.some((s) => re.test(s))) missing.push(name);
    };
    need('USER', client, /^USER /i);
    need('PASS', client, /^PASS /i);
    need('PASV', client, /^PASV\r?\n/i);
    need('EPSV', client, /^EPSV\r?\n/i);
    need('EPSV ALL', client, /^EPSV ALL\r?\n/i);
    need('PORT', client, /^PORT \d+,\d+,\d+,\d+,\d+,\d+\r\n/i);
    need('EPRT IPv4', client, /^EPRT \|1\|/i);
    need('EPRT IPv6', client, /^EPRT \|2\|/i);
    need('LPRT', client, /^LPRT /i);
    need('AUTH TLS', client, /^AUTH TLS\r\n/i);
    need('ABOR after IAC IP IAC DM', client, /^\xff\xf4\xff\xf2ABOR\r\n/);
    need('pipelined commands', client, /\n./);
    need('greeting', server, /^220 /);
    need('multi-line greeting', server, /^220-/);
    need('single-line 227', server, /^227 .*\d+,\d+,\d+,\d+,\d+,\d+/);
    need('multi-line 227', server, /^227-/);
    need('single-line 229', server, /^229 .*\(\|\|\|\d+\|\)/);
    need('multi-line 229', server, /^229-/);
    for (const d of ['1', '2', '3', '4', '5']) need(`${d}xx reply`, server, new RegExp(`^${d}\\d\\d[ -]`));
    expect(missing, 'missing from test/fuzz/*-seeds.txt').toEqual([]);
    expect(CLIENT_SEEDS.length + SERVER_SEEDS.length).toBeGreaterThanOrEqual(100);
  });
});
