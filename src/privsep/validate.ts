// What the privileged process accepts from the network process (privilege separation, Linux). The
// network process parses FTP from strangers and may be compromised; it holds no capability, so all it
// can do to the firewall is ask for this. Every request is checked here, whole, before anything is
// applied: a well-formed owner of this instance, at most two pinholes of one family with canonical
// addresses, data ports the proxy itself would choose, nothing below 1024 (but port 20 as the source of
// an active connection with -r; a range of tls_client passthrough: 1024 and up, ports kept), the
// proxy's side of each pinhole one of this host's addresses, and no
// more sessions holding pinholes than -m. Pure: the caller supplies what it knows (ctx).
import type { Owner, Pinhole } from '../firewall/backend.js';
import { PROXY_PORT_MAX, PROXY_PORT_MIN } from '../firewall/backend.js';
import { compressIPv6, type Family, isIPv4 } from '../net/address.js';

export type Request =
  | { op: 'replace'; owner: Owner; pinholes: Pinhole[] }
  | { op: 'clear'; owner: Owner };

export interface ValidationContext {
  /** This instance's id: the only one the network process may name. */
  instance: string;
  /** -r: an active (PORT) data connection may come from port 20. */
  port20: boolean;
  /** Is this address one of the host's own? */
  isLocal: (address: string) => boolean;
  /** Sessions now holding pinholes, and how many may (-m). */
  holders: ReadonlySet<number>;
  maxHolders: number;
  /**
   * tls_client passthrough: the policy's tls_passthrough_ports as this process read them; a range
   * pinhole must be exactly one of them (null or absent: none is allowed).
   */
  passthrough?: PassthroughRanges | null;
}

export interface PassthroughRanges {
  /** For any server... */
  any?: { low: number; high: number };
  /** ...or for one server address (canonical). */
  byServer: ReadonlyMap<string, { low: number; high: number }>;
}

/** A request refused: the text goes back to the network process (its 425 path) and into our log. */
export class RequestRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestRefused';
  }
}

/** A passive/active negotiation asks for one pinhole, a data_mode join for two. */
export const MAX_PINHOLES = 2;
/** Session ids count up from 1 in one process: far below this. */
const MAX_SESSION = 2 ** 31 - 1;

const PINHOLE_KEYS = new Set(['family', 'kind', 'side', 'from', 'to', 'toPort', 'toPortHigh', 'rdrTo', 'rdrPort', 'natFrom', 'natPort']);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPort = (v: unknown, min: number, max: number): v is number => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;

function fail(what: string): never {
  throw new RequestRefused(what);
}

function owner(v: unknown, ctx: ValidationContext): Owner {
  if (!isObject(v) || Object.keys(v).length !== 2) fail('malformed owner');
  if (v.instance !== ctx.instance) fail(`owner instance ${JSON.stringify(String(v.instance).slice(0, 40))} is not this instance`);
  if (!isPort(v.session, 1, MAX_SESSION)) fail('malformed session id');
  return { instance: ctx.instance, session: v.session };
}

/**
 * Is `v` an IPv6 address in the canonical text the sessions send (RFC 5952, as net/address.ts's
 * canonical() writes it: lower case, no leading zeros, the first longest run of two or more zero groups
 * as "::"), and not IPv4-mapped (those are IPv4 here)? By hand: the general parser takes a third of a
 * millisecond per address, and the privileged process checks four per negotiation.
 */
export function isCanonicalIPv6(v: string): boolean {
  if (!/^[0-9a-f:]{2,39}$/.test(v)) return false;
  const halves = v.split('::');
  if (halves.length > 2) return false;
  const group = /^(0|[1-9a-f][0-9a-f]{0,3})$/;
  const parse = (h: string): number[] | null => {
    if (h === '') return [];
    const g = h.split(':');
    return g.every((x) => group.test(x)) ? g.map((x) => parseInt(x, 16)) : null;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !tail) return false;
  const gap = 8 - head.length - tail.length;
  if (halves.length === 2 ? gap < 1 : gap !== 0) return false;
  const words = [...head, ...new Array<number>(gap).fill(0), ...tail];
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return false; // IPv4-mapped
  // Canonical exactly when it reads as canonical() would write these words.
  return compressIPv6(words) === v;
}

/** A canonical address of `family`, else refused. */
function address(v: unknown, family: Family, field: string): string {
  if (typeof v !== 'string' || v.length > 45) fail(`${field}: not an address`);
  if (family === 4 ? !isIPv4(v) : !isCanonicalIPv6(v)) fail(`${field}: not a canonical IPv${family} address`);
  return v;
}

function pinhole(v: unknown, ctx: ValidationContext, i: number): Pinhole {
  const at = `pinhole ${i + 1}`;
  if (!isObject(v)) fail(`${at}: not an object`);
  const extra = Object.keys(v).find((k) => !PINHOLE_KEYS.has(k));
  if (extra !== undefined) fail(`${at}: unexpected field ${JSON.stringify(extra.slice(0, 40))}`);
  if (v.family !== 4 && v.family !== 6) fail(`${at}: family must be 4 or 6`);
  const family = v.family;
  if (v.kind !== 'passive' && v.kind !== 'active' && v.kind !== 'local' && v.kind !== 'range') fail(`${at}: unknown kind`);
  const kind = v.kind;
  const range = kind === 'range';
  const p: Pinhole = {
    family,
    kind,
    from: address(v.from, family, `${at} from`),
    to: address(v.to, family, `${at} to`),
    // The port the data connection is sent to: always one the proxy drew (49152-65534); for a range
    // (tls_client passthrough) the server's passive range, never below 1024, the port kept.
    toPort: range
      ? isPort(v.toPort, 1024, 65535) ? v.toPort : fail(`${at}: a range below 1024 or not a port`)
      : isPort(v.toPort, PROXY_PORT_MIN, PROXY_PORT_MAX) ? v.toPort : fail(`${at}: toPort outside ${PROXY_PORT_MIN}-${PROXY_PORT_MAX}`),
    rdrTo: address(v.rdrTo, family, `${at} rdrTo`),
    rdrPort: isPort(v.rdrPort, 1024, 65535) ? v.rdrPort : fail(`${at}: rdrPort below 1024 or not a port`),
    natFrom: address(v.natFrom, family, `${at} natFrom`),
  };
  if (range) {
    if (!isPort(v.toPortHigh, p.toPort, 65535)) fail(`${at}: toPortHigh must be a port, not below toPort`);
    if (p.rdrPort !== p.toPort) fail(`${at}: a range keeps its ports (rdrPort must be toPort)`);
    // A compromised network process must not open another range than the admin's, nor any at all
    // without tls_client passthrough.
    const allowed = ctx.passthrough ? (ctx.passthrough.byServer.get(p.rdrTo) ?? ctx.passthrough.any) : undefined;
    if (!allowed) fail(`${at}: the policy has no tls_passthrough_ports for ${p.rdrTo}`);
    if (allowed.low !== p.toPort || allowed.high !== v.toPortHigh) fail(`${at}: ${p.toPort}-${String(v.toPortHigh)} is not the policy's tls_passthrough_ports ${allowed.low}-${allowed.high} for ${p.rdrTo}`);
    p.toPortHigh = v.toPortHigh;
  } else if (v.toPortHigh !== undefined) fail(`${at}: toPortHigh is for range pinholes`);
  if (v.natPort !== undefined) {
    // OpenBSD's -r: the active data connection appears to come from port 20, and only that.
    if (!(ctx.port20 && kind === 'active' && v.natPort === 20)) fail(`${at}: natPort only 20, for an active connection, with -r`);
    p.natPort = 20;
  }
  if (kind === 'local') {
    if (v.side !== 'client' && v.side !== 'server') fail(`${at}: a local pinhole needs side client or server`);
    p.side = v.side;
    if (p.natFrom !== p.from) fail(`${at}: a local pinhole keeps its source`);
  } else if (v.side !== undefined) fail(`${at}: side is for local pinholes`);
  // The proxy's own end: where passive connections appear to come from, where active ones arrive,
  // where a local one is sent. A request naming another host's address there is not one of ours.
  const own = kind === 'passive' || range ? p.natFrom : kind === 'active' ? p.to : p.rdrTo;
  if (!ctx.isLocal(own)) fail(`${at}: ${own} is not an address of this host`);
  return p;
}

/** The request, checked; RequestRefused says what is wrong with it. */
export function checkRequest(raw: unknown, ctx: ValidationContext): Request {
  if (!isObject(raw)) fail('not an object');
  if (raw.op === 'clear') return { op: 'clear', owner: owner(raw.owner, ctx) };
  if (raw.op !== 'replace') fail(`unknown request ${JSON.stringify(String(raw.op).slice(0, 40))}`);
  const o = owner(raw.owner, ctx);
  if (!Array.isArray(raw.pinholes) || raw.pinholes.length < 1 || raw.pinholes.length > MAX_PINHOLES) fail(`1 to ${MAX_PINHOLES} pinholes per request`);
  const pins = raw.pinholes.map((p, i) => pinhole(p, ctx, i));
  if (pins.some((p) => p.family !== pins[0]!.family)) fail('pinholes of more than one family');
  if (pins.length > 1 && !(pins.every((p) => p.kind === 'local') && pins[0]!.side !== pins[1]!.side)) {
    fail('two pinholes only for a data_mode join (one local pinhole per side)');
  }
  if (!ctx.holders.has(o.session) && ctx.holders.size >= ctx.maxHolders) fail(`${ctx.maxHolders} sessions already hold pinholes (-m)`);
  return { op: 'replace', owner: o, pinholes: pins };
}
