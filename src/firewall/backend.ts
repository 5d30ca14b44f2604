// The firewall behind one small interface, as OpenBSD's filter.c: the daemon says which single data
// connection to admit and NAT; a backend (nftables, iptables, pf, or the in-memory fake) makes it so.
import { type Family, hostPort } from '../net/address.js';

/**
 * One data connection, described once for every firewall:
 * the SYN `from -> to:toPort` (as it reaches the firewall) is sent on to `rdrTo:rdrPort` and appears to
 * come from `natFrom` (port `natPort` when set: -r gives 20).
 *
 *   passive: C -> OS:pp  =>  S:p   from P
 *   active:  S -> P:pp   =>  C:p   from OS
 *   local:   X -> T:pp   =>  P:lp  (data-mode forcing: to the proxy's own listener, source kept)
 *   range:   C -> OS:L-H =>  S:L-H from P (tls_client passthrough: the proxy cannot read PASV inside
 *            TLS, so every port of the server's passive range is open to this client while the session
 *            lives; any number of connections, the port kept)
 */
export interface Pinhole {
  family: Family;
  kind: 'passive' | 'active' | 'local' | 'range';
  /** local only: the leg of the data connection it admits (the client's or the server's). */
  side?: 'client' | 'server';
  from: string;
  to: string;
  /** range: the lowest port of the range (and rdrPort the same: ports are not translated). */
  toPort: number;
  /** range only: the highest port of the range, inclusive. */
  toPortHigh?: number;
  rdrTo: string;
  rdrPort: number;
  natFrom: string;
  natPort?: number;
  /** pf only (OpenBSD): routing domains of the client socket and of the proxy; 0 when absent. */
  rdomains?: { client: number; proxy: number };
}

/**
 * "C -> OS:pp => S:p from P", the pinhole in one line (logs, status, --print-rules); a range pinhole
 * "C -> OS:L-H => S:L-H from P".
 */
export function describePinhole(p: Pick<Pinhole, 'from' | 'to' | 'toPort' | 'toPortHigh' | 'rdrTo' | 'rdrPort' | 'natFrom' | 'natPort'>): string {
  const high = p.toPortHigh !== undefined ? `-${p.toPortHigh}` : '';
  return `${p.from} -> ${hostPort(p.to, p.toPort)}${high} => ${hostPort(p.rdrTo, p.rdrPort)}${high} from ${p.natPort ? hostPort(p.natFrom, p.natPort) : p.natFrom}`;
}

/** Is this a range pinhole (session-lived, many connections, ports kept)? */
export const isRange = (p: Pick<Pinhole, 'kind'>): boolean => p.kind === 'range';

/** "L-H" of a range pinhole. */
export const portRange = (p: Pick<Pinhole, 'toPort' | 'toPortHigh'>): string => `${p.toPort}-${p.toPortHigh ?? p.toPort}`;

/**
 * Whose objects these are: `<instance id>.<session id>`, written into every firewall object. The
 * instance id is random per daemon (src/firewall/instance.ts), never a pid: two instances in different
 * PID namespaces may both be pid 1.
 */
export interface Owner {
  instance: string;
  session: number;
}

export const ownerTag = (o: Owner): string => `${o.instance}.${o.session}`;

/** The owner an object's tag names, or null for anything else (an earlier version's `<pid>.<session>`). */
export function parseOwnerTag(tag: string): Owner | null {
  const m = /^([0-9a-f]{8})\.(\d+)$/.exec(tag);
  return m ? { instance: m[1]!, session: Number(m[2]) } : null;
}

/** Flags that change the rules themselves (the same for every session of an instance). */
export interface RuleOptions {
  /** -v: 1 logs the first packet of each data connection, 2 ("log (all)") every packet. */
  log: 0 | 1 | 2;
  /** -T: pf tag; on Linux a conntrack mark (a number) the admin's ruleset accepts instead. */
  tag?: string;
  /** -q: pf queue; on Linux a tc class ("major:minor") set as the packets' priority. */
  queue?: string;
  /** Seconds an unused pinhole lives before the kernel drops it by itself (nftables). */
  timeout: number;
}

/** The pinhole's key is taken by another (EEXIST): choose another proxy port and try again. */
export class PinholeConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PinholeConflict';
  }
}

/** What a pinhole's first SYN is matched on (family, C . OS . pp): unique among the live pinholes. */
export const pinholeKey = (p: Pinhole): string => `${p.family} ${p.from} ${p.to} ${p.toPort}`;

/**
 * The keys of this instance's live pinholes, for backends whose kernel objects do not refuse a
 * duplicate (iptables chains, pf anchors): two sessions of one client that drew the same proxy port
 * would both get rules, and the first one's would take the other's data connection. nftables needs
 * none of this (its `create` fails with EEXIST).
 */
export class PinholeKeys {
  private readonly owners = new Map<string, string>();
  private readonly held = new Map<string, string[]>();

  /**
   * Record the owner's new pinholes (its previous ones are released); PinholeConflict if taken. Range
   * pinholes are not claimed: two FTPS sessions of one client to one server (FileZilla opens several)
   * need the same range, their rules do the same thing, and each session's own chain or anchor goes
   * with that session.
   */
  claim(owner: string, pins: Pinhole[]): void {
    const keys = pins.filter((p) => !isRange(p)).map(pinholeKey);
    const taken = keys.find((k) => {
      const o = this.owners.get(k);
      return o !== undefined && o !== owner;
    });
    if (taken) throw new PinholeConflict(`pinhole ${taken} is held by session ${this.owners.get(taken)!}`);
    this.release(owner);
    for (const k of keys) this.owners.set(k, owner);
    this.held.set(owner, keys);
  }

  release(owner: string): void {
    for (const k of this.held.get(owner) ?? []) if (this.owners.get(k) === owner) this.owners.delete(k);
    this.held.delete(owner);
  }
}

// ---- what `ftp-proxy status` reads back (each backend parses its own listing into these) ----

/** A pinhole as the kernel holds it: the addresses of a Pinhole, and what the kernel says of its use. */
export interface LivePinhole extends Pick<Pinhole, 'from' | 'to' | 'toPort' | 'toPortHigh' | 'rdrTo' | 'rdrPort' | 'natFrom' | 'natPort'> {
  /** No source NAT: a data_mode pinhole to the proxy's own listener (the proxy joins the two legs). */
  local?: true;
  /**
   * waiting: no data connection yet; used: its one connection came (a second would be refused);
   * open: a range pinhole (tls_client passthrough), admitting any number of connections until its
   * session ends.
   */
  state: 'waiting' | 'used' | 'open' | 'unknown';
  /** Seconds until the kernel drops the pinhole by itself; null when it does not say. */
  expires: number | null;
}

export interface LiveSession {
  instance: string;
  session: number;
  pinholes: LivePinhole[];
}

export interface LiveInstance {
  id: string;
  running: boolean;
  /** The process holding the instance's name (Linux, when running and visible from here). */
  pid: number | null;
  /** Its sessions as it reports them (TLS legs, data path); absent when it does not answer. */
  sessions?: { session: number; client: string; server: string; tls: { client: boolean; server: boolean }; data: string }[];
  /** TCP sockets of that process: listeners and control connections. */
  sockets: { local: string; localPort: number; remote: string; remotePort: number; state: 'listen' | 'established' | 'other' }[];
}

export type BackendName = 'nftables' | 'iptables' | 'pf';

export interface BackendStatus {
  backend: BackendName;
  /** Whether the proxy's objects exist at all (the table, the parent chains). */
  present: boolean;
  instances: LiveInstance[];
  sessions: LiveSession[];
  /** pf: pfctl's own listing, printed as it is. */
  text?: string;
}

export const sortSessions = (s: LiveSession[]): LiveSession[] =>
  s.sort((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : a.session - b.session));

/** The instances list of a status: sorted, each judged by `alive`. */
export const liveInstances = (ids: Iterable<string>, alive: (id: string) => boolean): LiveInstance[] =>
  [...new Set(ids)].sort().map((id) => ({ id, running: alive(id), pid: null, sockets: [] }));

export class FirewallError extends Error {
  constructor(
    message: string,
    /** The command or script that failed, for the log. */
    readonly command?: string,
  ) {
    super(message);
    this.name = 'FirewallError';
  }
}

export interface FirewallBackend {
  /** "nftables", "iptables", "pf", "fake": used in log lines ("#3 nftables operation failed: ..."). */
  readonly name: string;
  /** This instance's id, in every owner tag (final once init() has resolved). */
  readonly instance: string;
  /** Check we may change the firewall, create or repair what the proxy owns, sweep dead instances' objects. */
  init(): Promise<void>;
  /** Atomically replace the session's pinholes with these (one transaction). */
  replace(owner: Owner, pinholes: Pinhole[]): Promise<void>;
  /** Remove the session's pinholes. */
  clear(owner: Owner): Promise<void>;
  /** Remove everything of this instance. */
  close(): Promise<void>;
}

/** The proxy's data ports: 49152..65534, as OpenBSD (65535 is never chosen). */
export const PROXY_PORT_MIN = 49152;
export const PROXY_PORT_MAX = 65534;

export function randomProxyPort(random: () => number = Math.random): number {
  return PROXY_PORT_MIN + Math.floor(random() * (PROXY_PORT_MAX - PROXY_PORT_MIN + 1));
}

export interface SessionEnds {
  family: Family;
  client: string;
  originalServer: string;
  server: string;
  proxy: string;
}

/** The pinhole for a 227/229 reply: the client connects to OS:pp, the kernel sends it to S:p from P. */
export function passivePinhole(s: SessionEnds, serverPort: number, proxyPort: number): Pinhole {
  return {
    family: s.family,
    kind: 'passive',
    from: s.client,
    to: s.originalServer,
    toPort: proxyPort,
    rdrTo: s.server,
    rdrPort: serverPort,
    natFrom: s.proxy,
  };
}

/**
 * The pinhole for `tls_client passthrough`: after the server's 234 the proxy relays TLS it cannot read,
 * so it opens the server's whole passive range LOW..HIGH to this client for the session: C -> OS:port
 * for any port in the range goes to S:port (the same port) from P, as a passive pinhole NATs (vsftpd
 * refuses data from another address than the control connection's). Not single-use and no timeout:
 * installed with replace(), gone with clear() at the session's end.
 */
export function passthroughPinhole(s: SessionEnds, low: number, high: number): Pinhole {
  if (!Number.isInteger(low) || !Number.isInteger(high) || low < 1 || high > 65535 || low > high) {
    throw new RangeError(`passthrough port range ${low}-${high}: not 1 <= LOW <= HIGH <= 65535`);
  }
  return {
    family: s.family,
    kind: 'range',
    from: s.client,
    to: s.originalServer,
    toPort: low,
    toPortHigh: high,
    rdrTo: s.server,
    rdrPort: low,
    natFrom: s.proxy,
  };
}

/**
 * A single-connection pinhole whose redirect changes nothing (forward mode, the proxy port drawn equal
 * to the server's own port): conntrack marks a connection DNATed only when its destination changed, so
 * the admin's `ct status dnat accept` (iptables: --ctstate DNAT) would drop it. Draw another port.
 */
export const isNoopRedirect = (p: Pinhole): boolean => p.kind !== 'range' && p.to === p.rdrTo && p.toPort === p.rdrPort;

/**
 * The pinhole for PORT/EPRT: the server connects to P:pp, the kernel sends it to C:p from OS (so the
 * client sees the server it dialled). With -r and PORT the source port becomes 20.
 */
export function activePinhole(s: SessionEnds, clientPort: number, proxyPort: number, port20: boolean): Pinhole {
  const p: Pinhole = {
    family: s.family,
    kind: 'active',
    from: s.server,
    to: s.proxy,
    toPort: proxyPort,
    rdrTo: s.client,
    rdrPort: clientPort,
    natFrom: s.originalServer,
  };
  if (port20) p.natPort = 20;
  return p;
}

/**
 * The pinhole for a data connection the proxy accepts itself (data_mode): `from` connects to `to:toPort`
 * and is redirected to the proxy's listener `listen:listenPort`. It keeps its source address.
 */
export function localPinhole(
  side: 'client' | 'server',
  family: Family,
  from: string,
  to: string,
  toPort: number,
  listen: string,
  listenPort: number,
): Pinhole {
  return { family, kind: 'local', side, from, to, toPort, rdrTo: listen, rdrPort: listenPort, natFrom: from };
}

/** On Linux a -T tag is a conntrack mark: a number, decimal or 0x-hex, 1..0xffffffff. */
export function parseMark(tag: string): number | null {
  if (!/^(0x[0-9a-fA-F]{1,8}|[1-9]\d{0,9})$/.test(tag)) return null;
  const n = Number(tag);
  return n >= 1 && n <= 0xffffffff ? n : null;
}

/** On Linux a -q queue is a tc class id "major:minor" (hex, as tc writes it). */
export function parseTcClass(queue: string): string | null {
  return /^[0-9a-fA-F]{1,4}:[0-9a-fA-F]{1,4}$/.test(queue) ? queue.toLowerCase() : null;
}
