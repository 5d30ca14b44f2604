// nftables backend. The proxy owns `table inet ftp-proxy`: static rules written once, and per data
// connection only set/map *elements*, each with a timeout and the comment "<instance id>.<session>".
//
//   dstnat (nat prerouting, before the admin's dstnat):
//     a SYN whose (saddr . daddr . dport) is in @onceN consumes that element and goes to chain
//     `pinhole`, which DNATs through @dnatN. With -v/-T/-q the element is in @oncevN instead, and the
//     verdict map @pinN sends the SYN to the instance's own pinhole chain, which logs/marks as the flags
//     say before the DNAT. (A jump in a map element makes the kernel re-check every element of that map
//     at each commit: 0.85 ms per negotiation with 10,000 pinholes, bench/. Plain instances add none.)
//     NAT chains see only a connection's first packet, so a retransmitted SYN keeps its binding while
//     any second connection finds the pinhole gone: pf's `keep state (max 1)`.
//   srcnat (nat postrouting): a connection we DNATed gets its source from @fromN (or @fromportN, -r),
//     keyed on the post-DNAT tuple plus the destination the SYN carried (ct original): two pinholes of
//     one client to one server port (two sessions given the same passive port) differ only in the
//     proxy port, so a key without it collided (EEXIST on every retry, 425).
//
//   range pinholes (tls_client passthrough: C -> OS:LOW-HIGH => S, ports kept, from P, for the whole
//     session): interval maps with concatenated ranges (Linux 5.6, nft 0.9.4), keyed C . OS . LOW-HIGH.
//     After the once-rules, a SYN found in @rangevN goes to the instance's range chain `r<pinhole
//     chain>`, which sets conntrack label 127 (RANGE_LABEL), logs/marks as the flags say, and DNATs
//     through @rdnatN. No element is consumed and none times out: clear() at the session's end removes
//     them. The range chains are apart from the pinhole chains because a consumed passive pinhole's
//     dnat element may share a key with a range (C . OS . port): a range connection must never be sent
//     where that one points.
//     Why the label: in forward mode S is OS and the port is kept, so the DNAT changes nothing and the
//     kernel does not set `ct status dnat` (nf_nat_setup_info sets IPS_DST_NAT only for a changed
//     tuple): the admin's forward chain accepts these connections by `ct label 127`, and srcnat finds
//     them by it too, in @rfromN, keyed C . S . LOW-HIGH . OS.
//
// The admin's ruleset adds only the interception of port 21 and `ct status dnat accept` in forward
// (or `ct mark <tag> accept` with -T), and in input for the data connections the proxy joins itself
// (data_mode in a policy file: `local` pinholes DNAT to the proxy's listener). See nftables-examples/.
import { createHash } from 'node:crypto';
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
  PinholeConflict,
  portRange,
  type RuleOptions,
} from './backend.js';
import { aliveIds, Instance, INSTANCE_ID, type InstanceIdentity, instanceAlive, type Liveness } from './instance.js';
import type { NftRunner } from './nft-runner.js';
import { startFastPath } from './nfnl/fast-path.js';
import { type ElementOp, opsToScript } from './nfnl/setelem.js';
import { FAST_MAX_OPS, type NetlinkSys, type NfnlSocket } from './nfnl/socket.js';

export const NFT_TABLE = 'ftp-proxy';
const T = `inet ${NFT_TABLE}`;

type Fam = 4 | 6;
const FAMILIES: Fam[] = [4, 6];
const addrType = (f: Fam): string => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');
const ipKw = (f: Fam): string => (f === 4 ? 'ip' : 'ip6');
const tuple = (f: Fam): string => `${ipKw(f)} saddr . ${ipKw(f)} daddr . tcp dport`;
/** The source-NAT key: the tuple after DNAT, then the destination before it (unique per pinhole). */
const natTuple = (f: Fam): string => `${tuple(f)} . ct original ${ipKw(f)} daddr . ct original proto-dst`;

/** Sets and maps the elements go into, per family. */
export const OBJECTS = ['once', 'oncev', 'pin', 'dnat', 'from', 'fromport'] as const;
/** The interval maps of range pinholes, per family (their elements never go over the netlink fast path). */
export const RANGE_OBJECTS = ['rangev', 'rdnat', 'rfrom'] as const;
const RANGE_OBJECT = /^(rangev|rdnat|rfrom)[46]$/;

/** The pinhole chain of instances without -v/-T/-q; the dstnat rule for @onceN goes straight to it. */
const PLAIN_CHAIN = 'pinhole';

/** The pinhole chain for a combination of -v/-T/-q: instances with the same flags share it. */
export function variantChain(o: RuleOptions): string {
  if (!o.log && !o.tag && !o.queue) return PLAIN_CHAIN;
  const h = createHash('sha256').update(JSON.stringify([o.log, o.tag ?? '', o.queue ?? ''])).digest('hex');
  return `pinhole-${h.slice(0, 8)}`;
}

/** The range chain of a pinhole chain: `rpinhole`, or `rpinhole-<hash>` for a combination of -v/-T/-q. */
export const rangeChain = (chain: string): string => `r${chain}`;

/**
 * The conntrack label of every connection through a range pinhole: what the admin's forward chain
 * accepts (`ct label 127 accept`) where `ct status dnat` cannot see them (forward mode keeps address
 * and port). The -vv/-q per-packet rules take their labels from 126 down.
 */
export const RANGE_LABEL = 127;

/** Whether this variant needs a rule on every packet (-vv logs all, -q sets every packet's priority). */
export const needsPerPacket = (o: RuleOptions): boolean => o.log === 2 || o.queue !== undefined;

const LOG_PREFIX = '"ftp-proxy: "';

/**
 * The whole static part, as one idempotent transaction: `add` for the table and its objects (a no-op
 * when they exist), flush-and-refill for our chains (rules are the same for every instance), so
 * running it again repairs what an admin reload removed without touching live elements. `ranges`
 * false leaves out what range pinholes need (for kernels or nft too old for concatenated ranges).
 */
export function tableScript(o: RuleOptions, perPacket: { label: number; present: boolean } | null, ranges = true): string {
  const L: string[] = [`add table ${T}`];
  for (const f of FAMILIES) {
    const k = `${addrType(f)} . ${addrType(f)} . inet_service`;
    // Declared as the kernel stores it (a set the packet path deletes from is dynamic, sized 64k),
    // so that re-adding it is a no-op rather than EEXIST.
    L.push(`add set ${T} once${f} { type ${k}; size 65535; flags dynamic,timeout; }`);
    L.push(`add set ${T} oncev${f} { type ${k}; size 65535; flags dynamic,timeout; }`);
    L.push(`add map ${T} pin${f} { type ${k} : verdict; flags timeout; }`);
    L.push(`add map ${T} dnat${f} { type ${k} : ${addrType(f)} . inet_service; flags timeout; }`);
    // (Named apart from the snat/snatport maps of earlier versions, whose 3-part key `add` cannot change.)
    const nk = `${k} . ${addrType(f)} . inet_service`;
    L.push(`add map ${T} from${f} { type ${nk} : ${addrType(f)}; flags timeout; }`);
    L.push(`add map ${T} fromport${f} { type ${nk} : ${addrType(f)} . inet_service; flags timeout; }`);
    if (ranges) {
      // No timeout flag: a range pinhole lives exactly as long as its session.
      L.push(`add map ${T} rangev${f} { type ${k} : verdict; flags interval; }`);
      L.push(`add map ${T} rdnat${f} { type ${k} : ${addrType(f)}; flags interval; }`);
      L.push(`add map ${T} rfrom${f} { type ${k} . ${addrType(f)} : ${addrType(f)}; flags interval; }`);
    }
  }
  // The ids of running instances (a mark holds the 8 hex digits): the last one to stop removes the table.
  L.push(`add set ${T} instances { type mark; }`);
  L.push(`add chain ${T} dstnat { type nat hook prerouting priority dstnat - 10; policy accept; }`);
  L.push(`add chain ${T} srcnat { type nat hook postrouting priority srcnat - 10; policy accept; }`);
  L.push(`flush chain ${T} dstnat`, `flush chain ${T} srcnat`);
  // Every instance writes the plain chain, which the first dstnat rule needs, whatever its own flags.
  L.push(`add chain ${T} ${PLAIN_CHAIN}`, `flush chain ${T} ${PLAIN_CHAIN}`);
  for (const f of FAMILIES) L.push(`add rule ${T} ${PLAIN_CHAIN} dnat ${ipKw(f)} to ${tuple(f)} map @dnat${f}`);
  for (const f of FAMILIES) {
    const syn = `add rule ${T} dstnat tcp flags & (syn | ack) == syn ${tuple(f)}`;
    L.push(`${syn} @once${f} delete @once${f} { ${tuple(f)} } goto ${PLAIN_CHAIN}`);
    L.push(`${syn} @oncev${f} delete @oncev${f} { ${tuple(f)} } ${tuple(f)} vmap @pin${f}`);
  }
  // After the once-rules, so a waiting passive pinhole inside a range still takes its own connection.
  if (ranges) {
    for (const f of FAMILIES) L.push(`add rule ${T} dstnat tcp flags & (syn | ack) == syn ${tuple(f)} vmap @rangev${f}`);
  }
  for (const f of FAMILIES) {
    L.push(`add rule ${T} srcnat ct status dnat snat ${ipKw(f)} to ${natTuple(f)} map @from${f}`);
    L.push(`add rule ${T} srcnat ct status dnat snat ${ipKw(f)} to ${natTuple(f)} map @fromport${f}`);
    if (ranges) L.push(`add rule ${T} srcnat ct label ${RANGE_LABEL} snat ${ipKw(f)} to ${tuple(f)} . ct original ${ipKw(f)} daddr map @rfrom${f}`);
  }
  // Every instance writes the plain range chain (a plain instance's elements point to it).
  if (ranges) {
    L.push(`add chain ${T} ${rangeChain(PLAIN_CHAIN)}`, `flush chain ${T} ${rangeChain(PLAIN_CHAIN)}`);
    L.push(`add rule ${T} ${rangeChain(PLAIN_CHAIN)} ct label set ${RANGE_LABEL}`);
    for (const f of FAMILIES) L.push(`add rule ${T} ${rangeChain(PLAIN_CHAIN)} dnat ${ipKw(f)} to ${tuple(f)} map @rdnat${f}`);
  }
  const chain = variantChain(o);
  if (chain !== PLAIN_CHAIN) {
    const first: string[] = [];
    if (o.log === 1) first.push(`log prefix ${LOG_PREFIX}`);
    if (o.tag !== undefined) first.push(`ct mark set 0x${parseMark(o.tag)!.toString(16).padStart(8, '0')}`);
    if (perPacket) first.push(`ct label set ${perPacket.label}`);
    L.push(`add chain ${T} ${chain}`, `flush chain ${T} ${chain}`);
    if (first.length) L.push(`add rule ${T} ${chain} ${first.join(' ')}`);
    for (const f of FAMILIES) L.push(`add rule ${T} ${chain} dnat ${ipKw(f)} to ${tuple(f)} map @dnat${f}`);
    if (ranges) {
      const r = rangeChain(chain);
      L.push(`add chain ${T} ${r}`, `flush chain ${T} ${r}`);
      L.push(`add rule ${T} ${r} ${[`ct label set ${RANGE_LABEL}`, ...first].join(' ')}`);
      for (const f of FAMILIES) L.push(`add rule ${T} ${r} dnat ${ipKw(f)} to ${tuple(f)} map @rdnat${f}`);
    }
  }
  if (perPacket) {
    L.push(`add chain ${T} perpacket { type filter hook forward priority mangle; policy accept; }`);
    if (!perPacket.present) {
      const st: string[] = [`ct label ${perPacket.label}`, 'counter'];
      if (o.log === 2) st.push(`log prefix ${LOG_PREFIX}`);
      if (o.queue !== undefined) st.push(`meta priority set ${parseTcClass(o.queue)!}`);
      L.push(`add rule ${T} perpacket ${st.join(' ')} comment "${chain}"`);
    }
  }
  return L.join('\n') + '\n';
}

const key = (p: Pinhole): string => `${p.from} . ${p.to} . ${isRange(p) ? portRange(p) : p.toPort}`;
/** After DNAT (C . S . p), then the original destination (OS . pp): distinct for distinct pinholes. */
const snatKey = (p: Pinhole): string => `${p.from} . ${p.rdrTo} . ${p.rdrPort} . ${p.to} . ${p.toPort}`;

interface Element {
  object: string;
  key: string;
  value?: string;
}

function elements(p: Pinhole, chain: string): Element[] {
  const f = p.family;
  if (isRange(p)) {
    // Nothing consumed, nothing to time out; the port is kept, so the SNAT key needs it once.
    return [
      { object: `rangev${f}`, key: key(p), value: `goto ${rangeChain(chain)}` },
      { object: `rdnat${f}`, key: key(p), value: p.rdrTo },
      { object: `rfrom${f}`, key: `${p.from} . ${p.rdrTo} . ${portRange(p)} . ${p.to}`, value: p.natFrom },
    ];
  }
  const gate: Element[] =
    chain === PLAIN_CHAIN
      ? [{ object: `once${f}`, key: key(p) }]
      : [
          { object: `oncev${f}`, key: key(p) },
          { object: `pin${f}`, key: key(p), value: `goto ${chain}` },
        ];
  const dnat: Element[] = [...gate, { object: `dnat${f}`, key: key(p), value: `${p.rdrTo} . ${p.rdrPort}` }];
  // A connection to the proxy's own listener goes up the input path, never through srcnat: no source NAT.
  if (p.kind === 'local') return dnat;
  return [
    ...dnat,
    p.natPort === undefined
      ? { object: `from${f}`, key: snatKey(p), value: p.natFrom }
      : { object: `fromport${f}`, key: snatKey(p), value: `${p.natFrom} . ${p.natPort}` },
  ];
}

/**
 * `create` (fails with EEXIST when the key is taken: a proxy-port collision) with timeout and owner.
 * As ops: the same changes go to the kernel as nft script text or, on the fast path, as netlink messages.
 */
export function addOps(pinholes: Pinhole[], owner: string, chain: string, timeout: number): ElementOp[] {
  return pinholes.flatMap((p) =>
    elements(p, chain).map(
      (e): ElementOp => ({ op: 'create', set: e.object, key: e.key, ...(e.value ? { value: e.value } : {}), ...(isRange(p) ? {} : { timeoutMs: timeout * 1000 }), comment: owner }),
    ),
  );
}

export const addScript = (pinholes: Pinhole[], owner: string, chain: string, timeout: number): string[] => opsToScript(addOps(pinholes, owner, chain, timeout), T);

/**
 * Removal that cannot fail on an element that is already gone (expired, or the once-element a data
 * connection consumed): add it (a no-op when present), then delete it, in the same transaction.
 * nft 1.0.6 has no `destroy element`.
 */
export function removeOps(pinholes: Pinhole[], chain: string): ElementOp[] {
  return pinholes.flatMap((p) =>
    elements(p, chain).flatMap((e): ElementOp[] => [
      // (range maps have no timeout flag: an element there takes none)
      { op: 'add', set: e.object, key: e.key, ...(e.value ? { value: e.value } : {}), ...(isRange(p) ? {} : { timeoutMs: 1000 }) },
      { op: 'delete', set: e.object, key: e.key },
    ]),
  );
}

/** Does this transaction touch a range map? (libnftables then: the fast path encodes single keys only) */
export const touchesRanges = (ops: readonly ElementOp[]): boolean => ops.some((o) => RANGE_OBJECT.test(o.set));

/** Who shares a range pinhole: its identity (what its elements hold), whatever the owner. */
const shareKey = (p: Pinhole): string => `${p.family} ${p.from} ${p.to} ${portRange(p)} ${p.rdrTo} ${p.natFrom}`;

/** A range pinhole in the kernel and the sessions holding it; its elements name the first holder. */
export interface SharedRange {
  pin: Pinhole;
  holders: string[];
}

/**
 * The element changes that move the range pinholes of `owner` from `before` to `after`, and the
 * sharing table after them (`shared` itself is not changed). Two sessions of one client to one server
 * (FileZilla opens several) want the same range: the elements would be identical, so the kernel holds
 * them once, for as long as any holder lives; when the holder they name goes first, they are written
 * again under the next one's name (so status and the sweep see a live owner).
 */
export function planRanges(
  shared: ReadonlyMap<string, SharedRange>,
  owner: string,
  before: Pinhole[],
  after: Pinhole[],
  chain: string,
): { remove: ElementOp[]; add: ElementOp[]; next: Map<string, SharedRange> } {
  const next = new Map([...shared].map(([k, v]) => [k, { pin: v.pin, holders: [...v.holders] }]));
  const remove: ElementOp[] = [];
  const add: ElementOp[] = [];
  for (const p of before) {
    const k = shareKey(p);
    const e = next.get(k);
    if (!e || !e.holders.includes(owner)) continue;
    const named = e.holders[0] === owner;
    e.holders = e.holders.filter((h) => h !== owner);
    if (!e.holders.length) {
      next.delete(k);
      remove.push(...removeOps([e.pin], chain));
    } else if (named) {
      remove.push(...removeOps([e.pin], chain));
      add.push(...addOps([e.pin], e.holders[0]!, chain, 0));
    }
  }
  for (const p of after) {
    const k = shareKey(p);
    const e = next.get(k);
    if (e) {
      if (!e.holders.includes(owner)) e.holders.push(owner);
      continue;
    }
    next.set(k, { pin: p, holders: [owner] });
    add.push(...addOps([p], owner, chain, 0));
  }
  return { remove, add, next };
}

export const removeScript = (pinholes: Pinhole[], chain: string): string[] => opsToScript(removeOps(pinholes, chain), T);

export interface NftablesOptions {
  rules: RuleOptions;
  runner: NftRunner;
  /** This instance's identity (default: a new random id, held as an abstract socket). */
  instance?: InstanceIdentity;
  /** Is the instance with this id running? (for the sweeps) */
  isAlive?: Liveness;
  warn?: (message: string) => void;
  info?: (message: string) => void;
  /**
   * The socket calls of the netlink fast path: each negotiation's element changes go to the kernel as
   * one nfnetlink batch instead of an nft script, once a self-test at start passed (src/firewall/nfnl/).
   * Absent: everything through the runner.
   */
  netlink?: NetlinkSys;
}

/** libnftables' "No such file or directory": the table (or an object in it) is not there. */
export const isEnoent = (e: unknown): boolean => e instanceof Error && /No such file or directory/.test(e.message);
const isEexist = (e: unknown): boolean => e instanceof Error && /File exists/.test(e.message);

/** An id as the `instances` set (type mark) takes it, and back. */
export const idMark = (id: string): string => `0x${id}`;
const markId = (v: unknown): string | null => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff ? n.toString(16).padStart(8, '0') : null;
};

/** One session's removal waiting to be sent with others (NftablesBackend.removeSoon). */
interface PendingRemoval {
  ops: ElementOp[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * Removals in order, grouped so that no group has more than `max` ops; a session's ops are never split
 * (its removal stays one transaction), so a session with more than `max` ops is a group of its own.
 */
export function removalGroups<R extends { ops: readonly unknown[] }>(removals: readonly R[], max: number): R[][] {
  const groups: R[][] = [];
  let cur: R[] = [];
  let n = 0;
  for (const r of removals) {
    if (cur.length && n + r.ops.length > max) {
      groups.push(cur);
      cur = [];
      n = 0;
    }
    cur.push(r);
    n += r.ops.length;
  }
  if (cur.length) groups.push(cur);
  return groups;
}

export class NftablesBackend implements FirewallBackend {
  readonly name = 'nftables';
  private readonly chain: string;
  private readonly identity: InstanceIdentity;
  private readonly live = new Map<string, Pinhole[]>();
  /** The repair in flight, which callers that fail meanwhile wait for instead of starting another. */
  private repairing: Promise<void> | null = null;
  /** The netlink fast path, when its self-test passed. */
  private fast: NfnlSocket | null = null;
  /** Range pinholes in the kernel, by identity, with the sessions holding them (see planRanges). */
  private shared = new Map<string, SharedRange>();
  /** Changes to range pinholes, one at a time (each plans from the sharing table the last one left). */
  private rangeQueue: Promise<unknown> = Promise.resolve();
  /** Whether the table has the range maps (false: this kernel or nft refused them at setup). */
  private ranges = true;
  /** Session removals waiting for the end of this event-loop turn, to go as one transaction. */
  private pending: PendingRemoval[] = [];
  /** The flushes of pending removals scheduled or running (close() waits for them). */
  private readonly removals = new Set<Promise<void>>();
  /** The flush scheduled for the end of this turn, if any: a removal asked for now joins it. */
  private scheduled: Promise<void> | null = null;

  constructor(private readonly o: NftablesOptions) {
    this.chain = variantChain(o.rules);
    this.identity = o.instance ?? new Instance();
  }

  get instance(): string {
    return this.identity.id;
  }

  get runnerKind(): string {
    return this.o.runner.kind;
  }

  private get alive(): Liveness {
    return this.o.isAlive ?? instanceAlive;
  }

  async init(): Promise<void> {
    await this.identity.claim();
    const listing = await this.setup();
    await this.sweep(listing);
    if (this.o.netlink && !this.fast) await this.startFast(this.o.netlink);
  }

  /** Element changes over netlink from now on, when a probe element written that way reads back right. */
  private async startFast(sys: NetlinkSys): Promise<void> {
    const r = await startFastPath({ sys, table: T, map: 'dnat4', listMap: (m) => this.o.runner.json(`list map ${T} ${m}`) });
    if ('socket' in r) {
      this.fast = r.socket;
      this.o.info?.(`nftables: elements over netlink (fast path self-test passed); the table through ${this.o.runner.kind}`);
    } else {
      this.o.warn?.(`nftables: netlink fast path off, it failed its self-test (${r.error}); elements go through ${this.o.runner.kind}`);
    }
  }

  /** Whether element changes go over netlink. */
  get fastPath(): boolean {
    return this.fast !== null;
  }

  /**
   * Create what is missing and register this instance; returns the listing from before. A kernel or
   * nft without concatenated ranges (before Linux 5.6, nft 0.9.4) refuses the range maps: then the
   * table without them, and a warning (only tls_client passthrough needs them).
   */
  private async setup(): Promise<NftJson | null> {
    const listing = await this.listTable();
    let perPacket: { label: number; present: boolean } | null = null;
    if (needsPerPacket(this.o.rules)) perPacket = this.pickLabel(listing);
    const register = `add element ${T} instances { ${idMark(this.instance)} }\n`;
    try {
      await this.o.runner.run(tableScript(this.o.rules, perPacket, this.ranges) + register);
    } catch (e) {
      if (!this.ranges) throw e;
      await this.o.runner.run(tableScript(this.o.rules, perPacket, false) + register);
      this.ranges = false;
      this.o.warn?.(`nftables: no range pinholes (tls_client passthrough): the kernel or nft refused interval maps with concatenated ranges, which need Linux 5.6 and nft 0.9.4 (${(e as Error).message})`);
    }
    return listing;
  }

  async replace(owner: Owner, pinholes: Pinhole[]): Promise<void> {
    const tag = ownerTag(owner);
    if (!pinholes.some(isRange) && !(this.live.get(tag) ?? []).some(isRange)) return this.replaceNow(tag, pinholes);
    if (pinholes.some(isRange) && !this.ranges) throw new FirewallError('nftables: this kernel or nft cannot hold range pinholes (tls_client passthrough needs Linux 5.6 and nft 0.9.4)');
    return this.ranged(() => this.replaceNow(tag, pinholes));
  }

  /** Run fn after every range change queued before it. */
  private ranged<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.rangeQueue.then(fn);
    this.rangeQueue = next.catch(() => undefined);
    return next;
  }

  private async replaceNow(tag: string, pinholes: Pinhole[]): Promise<void> {
    const old = this.live.get(tag) ?? [];
    const plan = planRanges(this.shared, tag, old.filter(isRange), pinholes.filter(isRange), this.chain);
    const ops = [
      ...removeOps(old.filter((p) => !isRange(p)), this.chain),
      ...plan.remove,
      ...addOps(pinholes.filter((p) => !isRange(p)), tag, this.chain, this.o.rules.timeout),
      ...plan.add,
    ];
    await this.apply(ops, pinholes);
    this.shared = plan.next;
    this.live.set(tag, pinholes);
  }

  async clear(owner: Owner): Promise<void> {
    const tag = ownerTag(owner);
    const old = this.live.get(tag);
    if (!old) return;
    if (!old.some(isRange)) {
      this.live.delete(tag);
      await this.removeSoon(removeOps(old, this.chain));
      return;
    }
    await this.ranged(async () => {
      // (a replace queued before this one may have changed them meanwhile)
      const now = this.live.get(tag) ?? [];
      const plan = planRanges(this.shared, tag, now.filter(isRange), [], this.chain);
      this.live.delete(tag);
      this.shared = plan.next;
      await this.apply([...removeOps(now.filter((p) => !isRange(p)), this.chain), ...plan.remove, ...plan.add], []);
    });
  }

  async close(): Promise<void> {
    await this.rangeQueue;
    // (removals already asked for go first: the socket and the runner must still be there for them)
    while (this.removals.size) await Promise.all([...this.removals]);
    // each shared range pinhole once, however many sessions hold it
    const all = [...[...this.live.values()].flat().filter((p) => !isRange(p)), ...[...this.shared.values()].map((e) => e.pin)];
    this.live.clear();
    this.shared.clear();
    const me = idMark(this.instance);
    try {
      if (all.length) await this.o.runner.run(removeScript(all, this.chain).join('\n') + '\n');
      await this.o.runner.run(`add element ${T} instances { ${me} }\ndelete element ${T} instances { ${me} }\n`);
      // Drop the table only when no instance is registered any more (after forgetting the proven dead):
      // an idle instance has no elements, but needs the chains.
      const listing = await this.listTable();
      if (listing) {
        const others = instanceIds(listing).filter((id) => id !== this.instance);
        const alive = await aliveIds(others, this.alive);
        const dead = others.filter((id) => !alive.get(id));
        if (dead.length) await this.o.runner.run(`delete element ${T} instances { ${dead.map(idMark).join(', ')} }\n`).catch(() => undefined);
        if (dead.length === others.length) await this.o.runner.run(`delete table ${T}\n`);
      }
    } finally {
      this.fast?.close();
      this.fast = null;
      this.o.runner.close();
      this.identity.release();
    }
  }

  /**
   * A session's removal, off any reply's path: it waits for the end of this event-loop turn
   * (setImmediate), and the removals of every session that ended within the turn go to the kernel
   * together: one commit instead of N, which halves what a removal costs the kernel (about 130 µs for one
   * session alone, 65 µs each in a batch: bench/README.md). setImmediate rather than a microtask:
   * each socket's close is its own I/O callback, and Node runs the microtasks after every callback, so
   * only the check phase sees the sessions of one poll together; rather than a timer: no added delay.
   * Resolves when this session's own elements are gone; rejects with this session's own error.
   */
  private removeSoon(ops: ElementOp[]): Promise<void> {
    if (!ops.length) return Promise.resolve();
    const done = new Promise<void>((resolve, reject) => this.pending.push({ ops, resolve, reject }));
    if (!this.scheduled) {
      const flush = new Promise<void>((r) => setImmediate(r)).then(() => {
        this.scheduled = null;
        const batch = this.pending;
        this.pending = [];
        return this.flushRemovals(batch);
      });
      this.scheduled = flush;
      this.removals.add(flush);
      void flush.finally(() => this.removals.delete(flush));
    }
    return done;
  }

  /** Never rejects: each session's outcome goes to its own promise. */
  private async flushRemovals(batch: PendingRemoval[]): Promise<void> {
    for (const group of removalGroups(batch, FAST_MAX_OPS)) {
      if (group.length > 1) {
        try {
          await this.send(group.flatMap((r) => r.ops));
          for (const r of group) r.resolve();
          continue;
        } catch {
          // A transaction is all or nothing: none of it happened. Each session again on its own (with
          // the repair of a missing table), so that one bad session leaves no other's elements behind
          // and each failure reaches its own session's log, once.
        }
      }
      for (const r of group) {
        try {
          await this.apply(r.ops, []);
          r.resolve();
        } catch (e) {
          r.reject(e);
        }
      }
    }
  }

  /**
   * One transaction; when the table is gone or damaged (an admin's `flush ruleset`), repair it and try
   * once more. EEXIST on a new element means its proxy port is taken: the caller picks another.
   */
  private async apply(ops: ElementOp[], added: Pinhole[]): Promise<void> {
    if (!ops.length) return;
    try {
      await this.send(ops);
    } catch (e) {
      if (e instanceof PinholeConflict) throw e;
      if (isEexist(e) && added.length) throw new PinholeConflict((e as Error).message);
      if (!isEnoent(e)) throw e;
      await this.repair();
      // Old elements that went with the table are not put back (a used pinhole must not reopen); only
      // the additions are still wanted. (The repair put the live range pinholes back: an element of
      // one of them is added, a no-op, rather than created.)
      const retry = ops.filter((o) => o.op === 'create').map((o): ElementOp => (RANGE_OBJECT.test(o.set) ? { ...o, op: 'add' } : o));
      if (retry.length) {
        try {
          await this.send(retry);
        } catch (e2) {
          if (e2 instanceof PinholeConflict) throw e2;
          if (isEexist(e2)) throw new PinholeConflict((e2 as Error).message);
          throw e2;
        }
      }
    }
  }

  /**
   * One transaction: one netlink batch on the fast path (synchronous: nfnetlink answers inside the send,
   * errors name the kernel's errno in nft's words), else (or when too large for one batch) one script
   * through the runner.
   */
  private async send(ops: ElementOp[]): Promise<void> {
    // Range pinholes, once per session, through the runner: the fast path encodes single keys only.
    if (this.fast && ops.length <= FAST_MAX_OPS && !touchesRanges(ops)) this.fast.apply(ops);
    else await this.o.runner.run(opsToScript(ops, T).join('\n') + '\n');
  }

  /**
   * Recreate what is missing, without sweeping: a sweep judges elements by their owners, and the
   * elements of this instance's other live sessions must survive a repair. Sessions failing together
   * share one repair.
   */
  private repair(): Promise<void> {
    this.repairing ??= (async () => {
      try {
        this.o.warn?.(`nftables: table ${T} is missing or damaged (a ruleset reload?), recreating it`);
        await this.setup();
        // Range pinholes live as long as their sessions, which still do: put them back (`add`, a
        // no-op for any still there). Once-pinholes are not: a used one must not reopen.
        const back = [...this.shared.values()].flatMap((e) => addOps([e.pin], e.holders[0]!, this.chain, 0)).map((o): ElementOp => ({ ...o, op: 'add' }));
        if (back.length && this.ranges) await this.o.runner.run(opsToScript(back, T).join('\n') + '\n');
      } finally {
        this.repairing = null;
      }
    })();
    return this.repairing;
  }

  private async listTable(): Promise<NftJson | null> {
    try {
      return (await this.o.runner.json(`list table ${T}`)) as NftJson;
    } catch (e) {
      if (isEnoent(e)) return null;
      throw e;
    }
  }

  private pickLabel(listing: NftJson | null): { label: number; present: boolean } {
    const used = new Map<string, number>();
    for (const item of listing?.nftables ?? []) {
      const rule = item.rule;
      if (!rule || rule.chain !== 'perpacket') continue;
      const label = findLabel(rule.expr);
      if (label !== null && rule.comment) used.set(rule.comment, label);
    }
    const mine = used.get(this.chain);
    if (mine !== undefined) return { label: mine, present: true };
    const taken = new Set(used.values());
    for (let b = RANGE_LABEL - 1; b >= 0; b--) if (!taken.has(b)) return { label: b, present: false };
    throw new FirewallError('nftables: no free conntrack label for -vv/-q');
  }

  /** At start: remove what instances proven dead left (a crash or SIGKILL), and forget them. */
  private async sweep(listing: NftJson | null): Promise<void> {
    const owned = ownedElements(listing);
    const ids = [...instanceIds(listing), ...owned.map((e) => e.instance)].filter((id) => id !== this.instance);
    const alive = await aliveIds(ids, this.alive);
    const deadInstances = instanceIds(listing).filter((id) => alive.get(id) === false);
    if (deadInstances.length) {
      await this.o.runner.run(`delete element ${T} instances { ${deadInstances.map(idMark).join(', ')} }\n`).catch(() => undefined);
    }
    const stale = owned.filter((e) => alive.get(e.instance) === false);
    if (!stale.length) return;
    const del = stale.map((e) => `delete element ${T} ${e.object} { ${e.key} }`);
    try {
      await this.o.runner.run(del.join('\n') + '\n');
    } catch {
      // Some expired between listing and deleting: take them one at a time.
      for (const d of del) await this.o.runner.run(d + '\n').catch(() => undefined);
    }
    this.o.warn?.(`nftables: removed ${stale.length} stale element(s) left by ${new Set(stale.map((e) => e.instance)).size} dead instance(s)`);
  }
}

// ---- reading `nft -j list table` ----

interface NftJsonItem {
  set?: { name: string; elem?: unknown[] };
  map?: { name: string; elem?: unknown[] };
  rule?: { chain: string; comment?: string; expr?: unknown[] };
}
export interface NftJson {
  nftables?: NftJsonItem[];
}

export interface OwnedElement {
  object: string;
  key: string;
  instance: string;
  session: number;
}

/** Every element of our sets and maps whose comment names an owner (`<id>.<session>`). */
export function ownedElements(listing: NftJson | null): OwnedElement[] {
  const out: OwnedElement[] = [];
  for (const item of listing?.nftables ?? []) {
    const obj = item.set ?? item.map;
    if (!obj?.elem) continue;
    for (const raw of obj.elem) {
      // map elements are [key, value]; set elements are the key alone
      const keyPart = Array.isArray(raw) ? raw[0] : raw;
      const elem = (keyPart as { elem?: { val: unknown; comment?: string } }).elem;
      const owner = parseOwnerTag(elem?.comment ?? '');
      if (!elem || !owner) continue;
      out.push({ object: obj.name, key: jsonKey(elem.val), instance: owner.instance, session: owner.session });
    }
  }
  return out;
}

/** The ids in the `instances` set (nft lists the marks as numbers). */
export function instanceIds(listing: NftJson | null): string[] {
  for (const item of listing?.nftables ?? []) {
    if (item.set?.name !== 'instances') continue;
    return (item.set.elem ?? [])
      .map((e) => markId(typeof e === 'object' && e !== null && 'elem' in e ? (e as { elem: { val: unknown } }).elem.val : e))
      .filter((id): id is string => id !== null && INSTANCE_ID.test(id));
  }
  return [];
}

/** A key component as nft writes it: an address, a port, or a range {"range": [low, high]} as "low-high". */
const jsonPart = (x: unknown): string => {
  const r = (x as { range?: unknown[] } | null)?.range;
  return Array.isArray(r) && r.length === 2 ? `${String(r[0])}-${String(r[1])}` : String(x);
};

function jsonKey(val: unknown): string {
  const c = (val as { concat?: unknown[] }).concat;
  return c ? c.map(jsonPart).join(' . ') : jsonPart(val);
}

function findLabel(expr: unknown[] | undefined): number | null {
  for (const e of expr ?? []) {
    const m = (e as { match?: { left?: { ct?: { key?: string } }; right?: unknown } }).match;
    if (m?.left?.ct?.key === 'label') {
      const r = m.right;
      if (typeof r === 'number') return r;
      if (typeof r === 'string' && /^\d+$/.test(r)) return Number(r);
    }
  }
  return null;
}

// ---- `ftp-proxy status`: the listing read back into sessions and pinholes ----

interface StatusElem {
  key: (string | number)[];
  value: unknown;
  owner: string;
  expires: number | null;
}

function statusElements(listing: NftJson | null, name: string): StatusElem[] {
  const out: StatusElem[] = [];
  for (const item of listing?.nftables ?? []) {
    const obj = item.set ?? item.map;
    if (obj?.name !== name) continue;
    for (const raw of obj.elem ?? []) {
      const [k, v] = Array.isArray(raw) ? raw : [raw, undefined];
      const e = (k as { elem?: { val?: { concat?: unknown[] }; comment?: string; expires?: number } }).elem;
      const c = e?.val?.concat;
      if (!e || !c || (c.length !== 3 && c.length !== 5)) continue;
      // addresses are strings, ports (every third place) numbers
      out.push({ key: c.map((x, i) => (i % 3 === 2 ? Number(x) : String(x))), value: v, owner: e.comment ?? '', expires: typeof e.expires === 'number' ? e.expires : null });
    }
  }
  return out;
}

const keyStr = (k: (string | number)[]): string => k.join(' . ');

/** The range pinholes of an interval map: key C . OS . LOW-HIGH (rdnat) or C . S . LOW-HIGH . OS (rfrom). */
function rangeElements(listing: NftJson | null, name: string): { key: string[]; value: unknown; owner: string }[] {
  const out: { key: string[]; value: unknown; owner: string }[] = [];
  for (const item of listing?.nftables ?? []) {
    if (item.map?.name !== name) continue;
    for (const raw of item.map.elem ?? []) {
      if (!Array.isArray(raw)) continue;
      const e = (raw[0] as { elem?: { val?: { concat?: unknown[] }; comment?: string } }).elem;
      const c = e?.val?.concat;
      if (!e || !c) continue;
      out.push({ key: c.map(jsonPart), value: raw[1], owner: e.comment ?? '' });
    }
  }
  return out;
}

/** "50000-50100" (or "50000" for a range of one port) -> [low, high]. */
const ports = (s: string | undefined): [number, number] | null => {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s ?? '');
  return m ? [Number(m[1]), Number(m[2] ?? m[1])] : null;
};

/** Sessions and pinholes from `nft -j list table inet ftp-proxy`; instances judged by `alive`. */
export function nftStatus(listing: NftJson | null, alive: (id: string) => boolean): BackendStatus {
  const sessions = new Map<string, LiveSession>();
  const ids = new Set(instanceIds(listing));
  for (const f of FAMILIES) {
    // not yet used: in once (plain instances) or oncev (instances with -v, -T or -q)
    const once = new Set([...statusElements(listing, `once${f}`), ...statusElements(listing, `oncev${f}`)].map((e) => keyStr(e.key)));
    // keyed on the tuple after DNAT and the original destination: C . S . p . OS . pp
    const snat = new Map<string, { from: string; port?: number }>();
    for (const e of statusElements(listing, `from${f}`)) snat.set(keyStr(e.key), { from: String(e.value) });
    for (const e of statusElements(listing, `fromport${f}`)) {
      const c = (e.value as { concat?: unknown[] }).concat ?? [];
      snat.set(keyStr(e.key), { from: String(c[0]), port: Number(c[1]) });
    }
    for (const e of statusElements(listing, `dnat${f}`)) {
      const owner = parseOwnerTag(e.owner);
      if (!owner) continue;
      const c = (e.value as { concat?: unknown[] }).concat ?? [];
      const from = String(e.key[0]);
      const to = String(e.key[1]);
      const toPort = Number(e.key[2]);
      const rdrTo = String(c[0]);
      const rdrPort = Number(c[1]);
      const nat = snat.get(keyStr([from, rdrTo, rdrPort, to, toPort]));
      const p: LivePinhole = { from, to, toPort, rdrTo, rdrPort, natFrom: nat?.from ?? from, state: once.has(keyStr(e.key)) ? 'waiting' : 'used', expires: e.expires };
      if (nat?.port !== undefined) p.natPort = nat.port;
      if (!nat) p.local = true;
      const s = sessions.get(e.owner) ?? { instance: owner.instance, session: owner.session, pinholes: [] };
      s.pinholes.push(p);
      sessions.set(e.owner, s);
      ids.add(owner.instance);
    }
    // range pinholes (tls_client passthrough): open for their session, no timeout
    const rnat = new Map(rangeElements(listing, `rfrom${f}`).map((e) => [e.key.join(' . '), String(e.value)]));
    for (const e of rangeElements(listing, `rdnat${f}`)) {
      const owner = parseOwnerTag(e.owner);
      const range = ports(e.key[2]);
      if (!owner || !range || e.key.length !== 3) continue;
      const [from, to] = [e.key[0]!, e.key[1]!];
      const rdrTo = String(e.value);
      const natFrom = rnat.get([from, rdrTo, e.key[2]!, to].join(' . '));
      const p: LivePinhole = { from, to, toPort: range[0], toPortHigh: range[1], rdrTo, rdrPort: range[0], natFrom: natFrom ?? from, state: 'open', expires: null };
      const s = sessions.get(e.owner) ?? { instance: owner.instance, session: owner.session, pinholes: [] };
      s.pinholes.push(p);
      sessions.set(e.owner, s);
      ids.add(owner.instance);
    }
  }
  return {
    backend: 'nftables',
    present: listing !== null,
    instances: liveInstances(ids, alive),
    sessions: sortSessions([...sessions.values()]),
  };
}
