// iptables backend, for hosts without nftables (iptables-legacy) or whose admins manage iptables
// (iptables-nft). Static parent chains the proxy creates at start and jumps to them from the builtin
// chains:
//   nat    PREROUTING  -> FTPPROXY-PRE   DNAT of each pinhole's first SYN
//   nat    POSTROUTING -> FTPPROXY-POST  SNAT of the connections we DNATed
//   filter FORWARD     -> FTPPROXY-FWD   ACCEPT of those connections (pf's "pass quick")
//   mangle FORWARD     -> FTPPROXY-MGL   (-q only) CLASSIFY into the tc class
//   filter INPUT       -> FTPPROXY-IN    ACCEPT of a data connection to the proxy's own listener (the
//                                        `local` pinholes of data_mode in a policy file)
// and per session the chains FTPP-<instance id>-<session>-<kind><set>: kind D (DNAT, nat PREROUTING), S (SNAT, nat
// POSTROUTING), F (filter FORWARD), M (mangle FORWARD), I (filter INPUT, only when a negotiation has a
// local pinhole); set a letter A-Z. They are applied through kept `iptables-restore --noflush`
// processes, per family one for additions and one for removals (restore-stream.ts; one transaction
// per table block). Each running instance also holds an
// empty chain FTPPI-<instance id> in filter: the parents go only when no instance holds one.
//
// Replacing a negotiation writes the session's next free set and only then removes the old one: the
// reply waits for additions only, and never for a removal (deleting a jump means finding it: with
// 10,000 pinholes a few hundred ms with iptables-nft); queued removals go as one transaction.
//
// Like the nftables backend, a pinhole admits one connection: its DNAT rule records the client in a
// per-negotiation `recent` list and does not match again (a retransmitted SYN keeps its conntrack NAT
// binding), and `-m time --datestop` makes an unused pinhole inert after --pinhole-timeout seconds even
// if the proxy is killed. The SNAT and ACCEPT rules match the connection's original destination
// (conntrack --ctorigdst/--ctorigdstport), so they can only ever apply to a connection the DNAT made.
//
// A range pinhole (tls_client passthrough: C -> OS:LOW-HIGH => S, ports kept, from P) is the same
// rules with `--dport LOW:HIGH`, without the `recent` match and without --datestop: it admits any
// number of connections and lives exactly as long as its session's chains. Its SNAT and ACCEPT rules
// do not ask for --ctstate DNAT: in forward mode S is OS and the port is kept, so the DNAT changes
// nothing and the kernel does not mark the connection DNAT; they match the original tuple instead.
import { execa } from 'execa';
import {
  type BackendStatus,
  type FirewallBackend,
  FirewallError,
  isRange,
  type LivePinhole,
  type LiveSession,
  liveInstances,
  sortSessions,
  type Owner,
  ownerTag,
  parseMark,
  parseOwnerTag,
  parseTcClass,
  type Pinhole,
  PinholeKeys,
  type RuleOptions,
} from './backend.js';
import { aliveIds, Instance, type InstanceIdentity, instanceAlive, type Liveness } from './instance.js';
import { type RestoreProcess, RestoreStream } from './restore-stream.js';

type Fam = 4 | 6;
/** A chain set's letter: a session's negotiations rotate through them (see replace()). */
type Set_ = string;
export const SET_LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
type Table = 'nat' | 'filter' | 'mangle';

export const PARENTS: { table: Table; chain: string; builtin: string }[] = [
  { table: 'nat', chain: 'FTPPROXY-PRE', builtin: 'PREROUTING' },
  { table: 'nat', chain: 'FTPPROXY-POST', builtin: 'POSTROUTING' },
  { table: 'filter', chain: 'FTPPROXY-FWD', builtin: 'FORWARD' },
  { table: 'mangle', chain: 'FTPPROXY-MGL', builtin: 'FORWARD' },
  { table: 'filter', chain: 'FTPPROXY-IN', builtin: 'INPUT' },
];

const KINDS = [
  { kind: 'D', rules: 'PRE', table: 'nat', parent: 'FTPPROXY-PRE' },
  { kind: 'S', rules: 'POST', table: 'nat', parent: 'FTPPROXY-POST' },
  { kind: 'F', rules: 'FWD', table: 'filter', parent: 'FTPPROXY-FWD' },
  { kind: 'M', rules: 'MGL', table: 'mangle', parent: 'FTPPROXY-MGL' },
  { kind: 'I', rules: 'IN', table: 'filter', parent: 'FTPPROXY-IN' },
] as const;
type Kind = (typeof KINDS)[number]['kind'];

/** FTPP-<instance id>-<session>-<kind><set>: within xtables' 28 characters for session ids below 10^11. */
export const chainName = (o: Owner, kind: Kind, set: Set_): string => `FTPP-${o.instance}-${o.session}-${kind}${set}`;

/**
 * How a builtin chain jumps to a parent: FORWARD only for a connection's first packet, so established
 * data never walks the session chains (with 10,000 pinholes every forwarded packet did: 40 MB/s), unless
 * -vv must log every packet. The NAT chains see only first packets anyway; INPUT and mangle (-q sets
 * every packet's class) keep the plain jump.
 */
export function jumpArgs(p: { chain: string }, everyPacket: boolean): string {
  return p.chain === 'FTPPROXY-FWD' && !everyPacket ? `-m conntrack --ctstate NEW -j ${p.chain}` : `-j ${p.chain}`;
}

/** The empty chain (filter table) that says an instance is running: FTPPI-<instance id>. */
export const markerChain = (id: string): string => `FTPPI-${id}`;

/** A session chain's owner, from an iptables-save line `:FTPP-<id>-<session>-<kind><set> ...`. */
const SESSION_CHAIN = /^:FTPP-([0-9a-f]{8})-(\d+)-[DSFMI]([A-Z]) /gm;
const MARKER_CHAIN = /^:FTPPI-([0-9a-f]{8}) /gm;

/**
 * What makes the parent chains and the builtin jumps to them right, from an iptables-save: a missing
 * chain is made with -N (which fails, rather than flushing as `:CHAIN - [0:0]` would, when another
 * process made it meanwhile: the caller then reads again), a missing jump inserted, a duplicated one
 * deleted. Empty when all is in order, so a repair run twice does nothing the second time.
 */
export function parentRepairScript(save: string, withMangle: boolean, marker?: string, everyPacket = false): string {
  const script: string[] = [];
  for (const table of ['nat', 'filter', 'mangle'] as const) {
    const parents = PARENTS.filter((p) => p.table === table && (table !== 'mangle' || withMangle));
    if (!parents.length) continue;
    const section = tableSection(save, table);
    const lines: string[] = [];
    for (const p of parents) {
      if (!section.includes(`:${p.chain} `)) lines.push(`-N ${p.chain}`);
      const jump = jumpArgs(p, everyPacket);
      const jumps = section.split('\n').filter((l) => l === `-A ${p.builtin} ${jump}`).length;
      if (jumps === 0) lines.push(`-I ${p.builtin} 1 ${jump}`);
      for (let i = 1; i < jumps; i++) lines.push(`-D ${p.builtin} ${jump}`);
    }
    if (table === 'filter' && marker && !section.includes(`:${markerChain(marker)} `)) lines.push(`-N ${markerChain(marker)}`);
    if (lines.length) script.push(`*${table}`, ...lines, 'COMMIT');
  }
  return script.length ? script.join('\n') + '\n' : '';
}

const host = (a: string, f: Fam): string => `${a}/${f === 4 ? 32 : 128}`;
const hostPort = (a: string, p: number, f: Fam): string => (f === 4 ? `${a}:${p}` : `[${a}]:${p}`);

/** UTC time `seconds` from `now`, as -m time --datestop takes it. */
export function datestop(now: Date, seconds: number): string {
  return new Date(now.getTime() + seconds * 1000).toISOString().slice(0, 19);
}

export interface IptablesRules {
  /** Rules per chain kind (without the chain name), in order. */
  PRE: string[];
  POST: string[];
  FWD: string[];
  MGL: string[];
  /** Local pinholes only: ACCEPT in INPUT. */
  IN: string[];
}

/**
 * The rules of one negotiation's pinholes. `seq` names the negotiation's `recent` list (a new list per
 * negotiation, so a new pinhole never sees an old one's entry).
 */
export function pinholeRules(pins: Pinhole[], o: RuleOptions, owner: Owner, seq: number, now: Date): IptablesRules {
  const r: IptablesRules = { PRE: [], POST: [], FWD: [], MGL: [], IN: [] };
  const list = `ftpp-${ownerTag(owner)}-${seq}`;
  const until = datestop(now, o.timeout);
  const comment = `-m comment --comment "ftp-proxy ${ownerTag(owner)}"`;
  for (const p of pins) {
    const f = p.family;
    const range = isRange(p);
    // A range: every port LOW:HIGH, the port kept; no single use, no expiry (it goes with its session).
    const toPorts = range ? `${p.toPort}:${p.toPortHigh ?? p.toPort}` : String(p.toPort);
    const rdrPorts = range ? toPorts : String(p.rdrPort);
    const syn = `-s ${host(p.from, f)} -d ${host(p.to, f)} -p tcp -m tcp --dport ${toPorts} --tcp-flags SYN,ACK SYN${range ? '' : ` -m time --datestop ${until}`}`;
    const unused = range ? '' : ` -m recent ! --rcheck --name ${list} --rsource`;
    const consume = range ? '' : ` -m recent --set --name ${list} --rsource`;
    if (o.log === 1) r.PRE.push(`${syn}${unused} ${comment} -j LOG --log-prefix "ftp-proxy: "`);
    if (o.tag !== undefined) r.PRE.push(`${syn}${unused} ${comment} -j CONNMARK --set-mark 0x${parseMark(o.tag)!.toString(16)}`);
    const rdr = range ? p.rdrTo : hostPort(p.rdrTo, p.rdrPort, f);
    r.PRE.push(`${syn}${unused}${consume} ${comment} -j DNAT --to-destination ${rdr}`);
    // After DNAT: the tuple the server (or client) sees, and the destination the SYN was sent to.
    const dnat = range ? '' : ' --ctstate DNAT';
    const after = `-s ${host(p.from, f)} -d ${host(p.rdrTo, f)} -p tcp -m tcp --dport ${rdrPorts} -m conntrack${dnat} --ctorigdst ${p.to} --ctorigdstport ${toPorts}`;
    // Every packet of that connection, both directions: what conntrack remembers of it.
    const conn = `-p tcp -m conntrack${dnat} --ctorigsrc ${p.from} --ctorigdst ${p.to} --ctorigdstport ${toPorts}`;
    if (p.kind === 'local') {
      // To the proxy's own listener: up the input path, no source NAT, nothing forwarded.
      if (o.tag === undefined) r.IN.push(`${after} ${comment} -j ACCEPT`);
      continue;
    }
    const nat = p.natPort === undefined ? p.natFrom : hostPort(p.natFrom, p.natPort, f);
    r.POST.push(`${after} ${comment} -j SNAT --to-source ${nat}`);
    if (o.log === 2) r.FWD.push(`${conn} ${comment} -j LOG --log-prefix "ftp-proxy: "`);
    // -T: like pf's match rules, the pinhole does not pass by itself; the ruleset accepts the mark.
    if (o.tag === undefined) r.FWD.push(`${after} ${comment} -j ACCEPT`);
    if (o.queue !== undefined) r.MGL.push(`${conn} ${comment} -j CLASSIFY --set-class ${parseTcClass(o.queue)!}`);
  }
  return r;
}

/** The chain kinds a set has in a table: I only when it holds local pinholes. */
const kindsOf = (table: Table, withInput: boolean) => KINDS.filter((k) => k.table === table && (k.kind !== 'I' || withInput));

/** The parent chains a set links to in a table, each with the builtin chain that jumps to it. */
const parentsOf = (table: Table, withInput: boolean) => kindsOf(table, withInput).map((k) => PARENTS.find((x) => x.chain === k.parent)!);

/** The same over every table the instance uses (mangle only with -q). */
const linkedParents = (withMangle: boolean, withInput: boolean) =>
  (['nat', 'filter', 'mangle'] as const).filter((t) => t !== 'mangle' || withMangle).flatMap((t) => parentsOf(t, withInput));

/**
 * iptables-restore input that creates (or empties) a chain set, fills it and links it to the parents.
 * With `check`, each table's block first checks (-C) that the builtin chains still jump to our parents:
 * a ruleset reload that removed a jump makes the transaction fail, and the caller repairs. So the reply
 * path runs one iptables-restore and never an iptables-save. With 'list' the block lists the builtin
 * chains (-S) instead, and the caller looks for the jumps in what the kept process printed.
 */
export function addScript(owner: Owner, set: Set_, rules: IptablesRules, withMangle: boolean, check: boolean | 'list' = false, everyPacket = false): string {
  const out: string[] = [];
  for (const table of ['nat', 'filter', 'mangle'] as const) {
    if (table === 'mangle' && !withMangle) continue;
    out.push(`*${table}`);
    const kinds = kindsOf(table, rules.IN.length > 0);
    if (check) {
      // 'list': the builtin chains listed, checked by the caller (-S reads one chain; iptables-nft's -C
      // read every rule of the table: 30-70 ms with 10,000 pinholes)
      const parents = parentsOf(table, rules.IN.length > 0);
      if (check === 'list') for (const b of new Set(parents.map((p) => p.builtin))) out.push(`-S ${b}`);
      else for (const p of parents) out.push(`-C ${p.builtin} ${jumpArgs(p, everyPacket)}`);
    }
    for (const k of kinds) out.push(`:${chainName(owner, k.kind, set)} - [0:0]`);
    for (const k of kinds) for (const rule of rules[k.rules]) out.push(`-A ${chainName(owner, k.kind, set)} ${rule}`);
    for (const k of kinds) out.push(`-A ${k.parent} -j ${chainName(owner, k.kind, set)}`);
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/** Unlink and delete a chain set. */
export function removeScript(owner: Owner, set: Set_, withMangle: boolean, withInput = false): string {
  return removeSetsScript([{ owner, set, withInput }], withMangle);
}

/** Unlink and delete many chain sets in one transaction per table (the end of many sessions at once). */
export function removeSetsScript(sets: { owner: Owner; set: Set_; withInput: boolean }[], withMangle: boolean): string {
  const out: string[] = [];
  for (const table of ['nat', 'filter', 'mangle'] as const) {
    if (table === 'mangle' && !withMangle) continue;
    out.push(`*${table}`);
    const chains = sets.flatMap((x) => kindsOf(table, x.withInput).map((k) => ({ parent: k.parent, chain: chainName(x.owner, k.kind, x.set) })));
    for (const c of chains) out.push(`-D ${c.parent} -j ${c.chain}`);
    for (const c of chains) out.push(`-F ${c.chain}`, `-X ${c.chain}`);
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/** The IPv6 twin of an iptables command: the basename changes, "/opt/x/iptables-legacy" -> "/opt/x/ip6tables-legacy". */
export const ip6Command = (base: string): string => base.replace(/(^|\/)iptables([^/]*)$/, '$1ip6tables$2');

export interface IptablesOptions {
  rules: RuleOptions;
  /** Command prefix: "iptables" (the host's default), "iptables-legacy" or "iptables-nft". */
  command?: string;
  /** This instance's identity (default: a new random id, held as an abstract socket). */
  instance?: InstanceIdentity;
  /** Is the instance with this id running? (for the sweeps) */
  isAlive?: Liveness;
  warn?: (message: string) => void;
  now?: () => Date;
  /**
   * false: a new iptables-restore process for every change (FTP_PROXY_IPTABLES_RESTORE=process), as
   * before the kept process; default true.
   */
  keep?: boolean;
  /** How the kept processes start (tests). */
  spawnRestore?: (command: string) => RestoreProcess;
}

interface SessionState {
  family: Fam;
  /** The set now linked, if any. */
  set: Set_ | null;
  /** Sets that have an INPUT chain (local pinholes). */
  input: Set<Set_>;
  /** Sets whose chains exist (written and not yet removed). */
  sets: Set<Set_>;
  /** The additions of this session, in order. */
  adds: Promise<unknown>;
  /** Removals under way (they finish after replace() has returned), by set. */
  removing: Map<Set_, Promise<unknown>>;
}

/** Everything of a session still under way, its additions and the removals they start, is done. */
async function settled(st: SessionState): Promise<void> {
  do await Promise.all([st.adds, ...st.removing.values()]);
  while (st.removing.size);
}

/**
 * The set a session's next negotiation writes: the next letter after the current one that is neither
 * linked nor still being removed, so an addition never waits for the removal of an earlier set (with
 * 10,000 pinholes iptables-nft takes a few hundred ms to find a jump it deletes). Only when all 26 are
 * busy does it reuse one, after its removal.
 */
export function nextSet(current: Set_ | null, busy: (set: Set_) => boolean): Set_ {
  const start = current === null ? 0 : SET_LETTERS.indexOf(current) + 1;
  for (let i = 0; i < SET_LETTERS.length; i++) {
    const c = SET_LETTERS[(start + i) % SET_LETTERS.length]!;
    if (c !== current && !busy(c)) return c;
  }
  return SET_LETTERS[start % SET_LETTERS.length]!;
}

export class IptablesBackend implements FirewallBackend {
  readonly name = 'iptables';
  private readonly identity: InstanceIdentity;
  private readonly sessions = new Map<string, SessionState>();
  private seq = 0;
  private readonly mangle: boolean;
  /** -vv logs every packet: the FORWARD jump cannot be for first packets only. */
  private get everyPacket(): boolean {
    return this.o.rules.log === 2;
  }
  /** Rules do not refuse a duplicate SYN match: two sessions drawing one proxy port are refused here. */
  private readonly keys = new PinholeKeys();

  constructor(private readonly o: IptablesOptions) {
    this.identity = o.instance ?? new Instance();
    this.mangle = o.rules.queue !== undefined;
  }

  get instance(): string {
    return this.identity.id;
  }

  private get alive(): Liveness {
    return this.o.isAlive ?? instanceAlive;
  }

  /** iptables/ip6tables with the variant prefix: ("iptables-legacy", 6, "-restore") -> "ip6tables-legacy-restore". */
  private cmd(f: Fam, suffix = ''): string {
    const base = this.o.command ?? 'iptables';
    return (f === 6 ? ip6Command(base) : base) + suffix;
  }

  private async run(f: Fam, suffix: string, args: string[], input?: string): Promise<string> {
    const cmd = this.cmd(f, suffix);
    const r = await execa(cmd, args, { ...(input !== undefined ? { input } : {}), reject: false });
    if (r.failed) {
      const msg = String(r.stderr ?? '').trim().split('\n').slice(0, 2).join('; ') || String(r.shortMessage ?? `${cmd} failed`);
      throw new FirewallError(`${cmd} ${args.join(' ')}: ${msg}`, input);
    }
    return String(r.stdout ?? '');
  }

  /**
   * The kept iptables-restore processes per family, once their self-test at start passed: one for
   * additions, one for removals, so that no reply waits behind a removal in flight (with 10,000
   * pinholes a removal takes 120-390 ms to find its jumps; back-to-back negotiations waited for it).
   */
  private readonly streams = new Map<Fam, { adds: RestoreStream; removals: RestoreStream }>();

  /** `later`: a removal, which no reply waits for. Without kept processes, a process per script. */
  private async restore(f: Fam, script: string, later = false): Promise<string[]> {
    const kept = this.streams.get(f);
    if (kept) return (later ? kept.removals : kept.adds).apply(script);
    await this.run(f, '-restore', ['--noflush', '--wait'], script);
    return [];
  }

  /**
   * Add a chain set, checking that the builtin chains still jump to our parents (an admin's reload may
   * have removed them): through the kept process by listing the builtins (-S), else by -C in the
   * transaction, which then fails.
   */
  private async addSet(f: Fam, owner: Owner, set: Set_, rules: IptablesRules): Promise<void> {
    const listed = this.streams.has(f);
    const out = await this.restore(f, addScript(owner, set, rules, this.mangle, listed ? 'list' : true, this.everyPacket));
    if (!listed) return;
    const have = new Set(out);
    const missing = linkedParents(this.mangle, rules.IN.length > 0).filter((p) => !have.has(`-A ${p.builtin} ${jumpArgs(p, this.everyPacket)}`));
    if (missing.length) throw new FirewallError(`the jump from ${missing.map((p) => `${p.builtin} to ${p.chain}`).join(', ')} is missing`);
  }

  /** Start the kept processes and see that they answer: stdbuf may be missing, or not work with this build. */
  private async startStream(f: Fam): Promise<void> {
    const make = (merge: boolean): RestoreStream =>
      new RestoreStream({ command: this.cmd(f, '-restore'), merge, ...(this.o.spawnRestore ? { spawn: this.o.spawnRestore } : {}) });
    const kept = { adds: make(false), removals: make(true) };
    try {
      await Promise.all([kept.adds.apply('', 5_000), kept.removals.apply('', 5_000)]);
      this.streams.set(f, kept);
    } catch (e) {
      await Promise.all([kept.adds.close(), kept.removals.close()]).catch(() => undefined);
      this.o.warn?.(`iptables: no kept ${this.cmd(f, '-restore')} process (${(e as Error).message}); a process per change instead`);
    }
  }

  /** Families whose iptables answered at start (a host may lack ip6tables). */
  private readonly families = new Set<Fam>();

  async init(): Promise<void> {
    await this.identity.claim();
    for (const f of [4, 6] as Fam[]) {
      try {
        await this.ensureParents(f);
        await this.sweep(f);
        if (this.o.keep !== false) await this.startStream(f);
        this.families.add(f);
      } catch (e) {
        if (f === 4) throw e;
        this.o.warn?.(`iptables: no IPv6 pinholes (${(e as Error).message})`);
      }
    }
  }

  /** Per family: the repair in flight, and the one queued behind it (which later callers share). */
  private readonly repairs = new Map<Fam, { running: Promise<boolean> | null; queued: Promise<boolean> | null }>();

  /**
   * Create the parent chains, the jumps to them and our marker chain where missing (also repairs after
   * an admin reload). Serialized: one repair at a time per family; callers that arrive while one runs
   * share the single next one (it reads the ruleset afresh, after the running one has written).
   */
  private ensureParents(f: Fam): Promise<boolean> {
    const r = this.repairs.get(f) ?? { running: null, queued: null };
    this.repairs.set(f, r);
    if (r.queued) return r.queued;
    const start = (): Promise<boolean> => {
      const p = this.repairNow(f).finally(() => {
        if (r.running === p) r.running = null;
      });
      r.running = p;
      return p;
    };
    if (!r.running) return start();
    const q: Promise<boolean> = r.running.catch(() => undefined).then(() => {
      r.queued = null;
      return start();
    });
    r.queued = q;
    return q;
  }

  /** Read, fix, and read again if another process changed the ruleset in between (-N then fails). */
  private async repairNow(f: Fam): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      const script = parentRepairScript(await this.run(f, '-save', []), this.mangle, this.instance, this.everyPacket);
      if (!script) return attempt > 1;
      try {
        await this.restore(f, script);
        return true;
      } catch (e) {
        if (attempt >= 3) throw e;
      }
    }
  }

  async replace(owner: Owner, pinholes: Pinhole[]): Promise<void> {
    const tag = ownerTag(owner);
    const family = (pinholes[0]?.family ?? 4) as Fam;
    if (!this.families.has(family)) throw new FirewallError(`no IPv${family} iptables on this host`);
    this.keys.claim(tag, pinholes);
    const st: SessionState = this.sessions.get(tag) ?? { family, set: null, input: new Set<Set_>(), sets: new Set<Set_>(), adds: Promise.resolve(), removing: new Map() };
    this.sessions.set(tag, st);
    const next = nextSet(st.set, (c) => st.sets.has(c) || st.removing.has(c));
    const rules = pinholeRules(pinholes, this.o.rules, owner, ++this.seq, this.o.now?.() ?? new Date());
    const withInput = rules.IN.length > 0;
    const old = st.set;
    const add = Promise.all([st.adds, st.removing.get(next)]).then(async () => {
      // The removal of this set's previous use (if all letters were busy) has run by now.
      if (withInput) st.input.add(next);
      else st.input.delete(next);
      try {
        await this.addSet(family, owner, next, rules);
      } catch (e) {
        // An admin reload may have removed the parent chains or the jumps to them (addSet's check):
        // repair, then write the set again.
        this.o.warn?.(`iptables: adding pinhole chains failed (${(e as Error).message}); repairing and retrying`);
        if (await this.ensureParents(family)) this.o.warn?.('iptables: the ftp-proxy chains or the jumps to them were missing (a ruleset reload?), restored them');
        // A table that committed before the failing one left its part of the set behind (one save and
        // one restore, not a process per command: ten sessions repairing at once overran their replies).
        await this.removeAll(family, removeScript(owner, next, this.mangle, withInput)).catch(() => undefined);
        await this.addSet(family, owner, next, rules);
      }
      st.sets.add(next);
      // The old set goes after the reply, which does not wait for it; nor does the next negotiation
      // (another letter): only clear() and close() do.
      if (!old || !st.sets.has(old)) return;
      const oldInput = st.input.delete(old);
      st.sets.delete(old);
      // One restore; command by command (an iptables process each, 10-20 ms) only if it fails.
      const removal: Promise<void> = this.removeAll(family, removeScript(owner, old, this.mangle, oldInput), true)
        .catch(() => undefined)
        .finally(() => {
          if (st.removing.get(old) === removal) st.removing.delete(old);
        });
      st.removing.set(old, removal);
    });
    st.set = next;
    st.family = family;
    st.adds = add.catch(() => undefined);
    await add;
  }

  async clear(owner: Owner): Promise<void> {
    const tag = ownerTag(owner);
    const st = this.sessions.get(tag);
    this.keys.release(tag);
    if (!st) return;
    this.sessions.delete(tag);
    await settled(st);
    const sets = this.takeSets(owner, st);
    if (sets.length) await this.removeAll(st.family, removeSetsScript(sets, this.mangle), true);
  }

  /** The chain sets of a session that exist, forgotten as they are handed out for removal. */
  private takeSets(owner: Owner, st: SessionState): { owner: Owner; set: Set_; withInput: boolean }[] {
    const out = [...st.sets].map((set) => ({ owner, set, withInput: st.input.has(set) }));
    st.sets.clear();
    return out;
  }

  /** Every session's chains in one iptables-restore per family (not a process per session), then the parents. */
  async close(): Promise<void> {
    const all = [...this.sessions.entries()];
    this.sessions.clear();
    try {
      await Promise.all(all.map(([, st]) => settled(st)));
      for (const f of this.families) {
        const sets = all.filter(([, st]) => st.family === f).flatMap(([tag, st]) => this.takeSets(parseOwnerTag(tag)!, st));
        if (sets.length) await this.removeAll(f, removeSetsScript(sets, this.mangle)).catch(() => undefined);
      }
      for (const f of this.families) await this.removeParents(f).catch(() => undefined);
    } finally {
      await Promise.all([...this.streams.values()].flatMap((k) => [k.adds, k.removals]).map((s) => s.close().catch(() => undefined)));
      this.streams.clear();
      this.identity.release();
    }
  }

  /**
   * Our marker chain goes; the parent chains and their jumps too, unless another instance still holds a
   * marker (a running one: the markers of instances proven dead go here) or has session chains.
   */
  private async removeParents(f: Fam): Promise<void> {
    await this.removeAll(f, `*filter\n-F ${markerChain(this.instance)}\n-X ${markerChain(this.instance)}\nCOMMIT\n`);
    const save = await this.run(f, '-save', []);
    const others = [...save.matchAll(MARKER_CHAIN)].map((m) => m[1]!).filter((id) => id !== this.instance);
    const alive = await aliveIds(others, this.alive);
    const dead = others.filter((id) => !alive.get(id));
    if (dead.length) await this.removeAll(f, `*filter\n${dead.map((id) => `-X ${markerChain(id)}`).join('\n')}\nCOMMIT\n`);
    if (dead.length < others.length || /^:FTPP-/m.test(save)) return;
    const script: string[] = [];
    for (const table of ['nat', 'filter', 'mangle'] as const) {
      const section = tableSection(save, table);
      const parents = PARENTS.filter((p) => p.table === table && section.includes(`:${p.chain} `));
      if (!parents.length) continue;
      script.push(`*${table}`);
      for (const p of parents) {
        // every form of the jump (instances with and without -vv)
        for (const l of section.split('\n')) if (l.startsWith(`-A ${p.builtin} `) && l.endsWith(` -j ${p.chain}`)) script.push(l.replace(/^-A /, '-D '));
      }
      for (const p of parents) script.push(`-F ${p.chain}`, `-X ${p.chain}`);
      script.push('COMMIT');
    }
    if (script.length) await this.removeAll(f, script.join('\n') + '\n');
  }

  /**
   * Removal tolerant of what is already gone (an admin's reload): when the whole script fails, it is cut
   * down to what iptables-save shows and tried again as a whole; line by line only if that fails too.
   */
  private async removeAll(f: Fam, script: string, later = false): Promise<void> {
    try {
      await this.restore(f, script, later);
    } catch {
      try {
        await this.restore(f, existingOnly(script, await this.run(f, '-save', [])), later);
      } catch {
        await this.restoreQuiet(f, script);
      }
    }
  }

  /** Apply each command of a removal script on its own, ignoring those that fail (already removed). */
  private async restoreQuiet(f: Fam, script: string): Promise<void> {
    let table = '';
    for (const line of script.split('\n')) {
      if (line.startsWith('*')) table = line.slice(1);
      else if (/^-[DFX] /.test(line)) {
        await this.run(f, '', ['-w', '-t', table, ...splitArgs(line)]).catch(() => undefined);
      }
    }
  }

  /** Chains FTPP-<id>-... of instances proven dead (never our own): unlink and delete them. */
  private async sweep(f: Fam): Promise<void> {
    const save = await this.run(f, '-save', []);
    // each session's owner and the letters of its chain sets
    const found = new Map<string, { owner: Owner; sets: Set<Set_> }>();
    for (const m of save.matchAll(SESSION_CHAIN)) {
      const key = `${m[1]}.${m[2]}`;
      const f = found.get(key) ?? { owner: { instance: m[1]!, session: Number(m[2]) }, sets: new Set<Set_>() };
      f.sets.add(m[3]!);
      found.set(key, f);
    }
    const markers = [...save.matchAll(MARKER_CHAIN)].map((m) => m[1]!);
    const ids = [...markers, ...[...found.values()].map((f) => f.owner.instance)].filter((id) => id !== this.instance);
    const alive = await aliveIds(ids, this.alive);
    const stale = [...found.values()].filter((f) => alive.get(f.owner.instance) === false);
    for (const { owner, sets } of stale) {
      const script = [...sets].map((set) => removeScript(owner, set, true, true)).join('');
      // Only what exists: filter the script down to chains present in the saved ruleset.
      await this.restoreQuiet(f, keepExisting(script, save));
    }
    const deadMarkers = markers.filter((id) => alive.get(id) === false);
    if (deadMarkers.length) await this.removeAll(f, `*filter\n${deadMarkers.map((id) => `-X ${markerChain(id)}`).join('\n')}\nCOMMIT\n`);
    if (stale.length) this.o.warn?.(`iptables: removed the chains of ${stale.length} session(s) of dead instances (IPv${f})`);
  }
}

/** The part of iptables-save output for one table. */
function tableSection(save: string, table: string): string {
  const start = save.indexOf(`*${table}\n`);
  if (start < 0) return '';
  const end = save.indexOf('\nCOMMIT', start);
  return save.slice(start, end < 0 ? undefined : end + 1);
}

/** A removal script without the lines iptables-save says would fail: absent chains, absent jumps. */
export function existingOnly(script: string, save: string): string {
  const rules = new Set(save.split('\n'));
  return script
    .split('\n')
    .filter((l) => {
      const d = /^-D (\S+) -j (\S+)$/.exec(l);
      if (d) return rules.has(`-A ${d[1]} -j ${d[2]}`);
      const m = /^-[FX] (\S+)$/.exec(l);
      return !m || save.includes(`:${m[1]} `);
    })
    .join('\n');
}

function keepExisting(script: string, save: string): string {
  return script
    .split('\n')
    .filter((l) => {
      const m = /^-[DFX] .*?(FTPPI?-[\w-]+)$/.exec(l);
      return !m || save.includes(`:${m[1]} `);
    })
    .join('\n');
}

function splitArgs(line: string): string[] {
  return line.split(/\s+/).filter(Boolean);
}

// ---- `ftp-proxy status`: iptables-save read back into sessions and pinholes ----

const field = (rule: string, re: RegExp): string | undefined => re.exec(rule)?.[1];
const bare = (a: string): string => a.replace(/\/(32|128)$/, '');

/** "10.0.2.2:21", "[2001:db8::2]:21", "10.0.2.2" -> address and port. */
function splitHostPort(s: string): { address: string; port?: number } {
  const m = /^\[(.+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  return m ? { address: m[1]!, port: Number(m[2]) } : { address: s.replace(/^\[|\]$/g, '') };
}

/**
 * Sessions and pinholes from iptables-save/ip6tables-save output. `used(list)` says whether a
 * negotiation's `recent` list holds its one connection (null: unknown); `now` dates --datestop.
 */
export function iptablesStatus(saves: string[], used: (list: string) => boolean | null, now: Date, alive: (id: string) => boolean): BackendStatus {
  const sessions = new Map<string, LiveSession>();
  const ids = new Set<string>();
  let present = false;
  for (const save of saves) {
    if (/^:FTPPROXY-(PRE|POST|FWD) /m.test(save)) present = true;
    for (const m of save.matchAll(SESSION_CHAIN)) ids.add(m[1]!);
    for (const m of save.matchAll(MARKER_CHAIN)) ids.add(m[1]!);
    const snat = new Map<string, { from: string; port?: number }>();
    for (const m of save.matchAll(/^-A FTPP-([0-9a-f]{8}-\d+)-S[A-Z] (.*-j SNAT --to-source (\S+).*)$/gm)) {
      const r = m[2]!;
      const key = `${m[1]} ${bare(field(r, /-s (\S+)/) ?? '')} ${bare(field(r, /-d (\S+)/) ?? '')} ${field(r, /--dport (\d+)/)} ${field(r, /--ctorigdstport (\d+)/) ?? ''}`;
      const hp = splitHostPort(m[3]!);
      snat.set(key, hp.port !== undefined ? { from: hp.address, port: hp.port } : { from: hp.address });
    }
    for (const m of save.matchAll(/^-A FTPP-(([0-9a-f]{8})-(\d+))-D[A-Z] (.*-j DNAT --to-destination (\S+).*)$/gm)) {
      const r = m[4]!;
      const rdr = splitHostPort(m[5]!);
      const from = bare(field(r, /-s (\S+)/) ?? '?');
      const to = bare(field(r, /-d (\S+)/) ?? '?');
      const toPort = Number(field(r, /--dport (\d+)/) ?? 0);
      // a range pinhole (tls_client passthrough): --dport LOW:HIGH, DNAT to the address alone
      const high = field(r, /--dport \d+:(\d+)/);
      const stop = field(r, /--datestop (\S+)/);
      const list = field(r, /--name (\S+)/);
      const rdrPort = rdr.port ?? (high !== undefined ? toPort : 0);
      const nat = snat.get(`${m[1]} ${from} ${rdr.address} ${rdrPort} ${toPort}`) ?? snat.get(`${m[1]} ${from} ${rdr.address} ${rdrPort} `);
      const u = list ? used(list) : null;
      const expires = stop ? Math.round((Date.parse(`${stop}Z`) - now.getTime()) / 1000) : null;
      const p: LivePinhole = {
        from,
        to,
        toPort,
        rdrTo: rdr.address,
        rdrPort,
        natFrom: nat?.from ?? from,
        state: high !== undefined ? 'open' : u === null ? 'unknown' : u ? 'used' : 'waiting',
        expires: expires === null || Number.isNaN(expires) ? null : expires,
      };
      if (high !== undefined) p.toPortHigh = Number(high);
      if (nat?.port !== undefined) p.natPort = nat.port;
      if (!nat) p.local = true;
      const owner = `${m[2]}.${m[3]}`;
      const s = sessions.get(owner) ?? { instance: m[2]!, session: Number(m[3]), pinholes: [] };
      s.pinholes.push(p);
      sessions.set(owner, s);
    }
  }
  return {
    backend: 'iptables',
    present,
    instances: liveInstances(ids, alive),
    sessions: sortSessions([...sessions.values()]),
  };
}
