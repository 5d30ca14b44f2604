// pf backend (OpenBSD): what OpenBSD's filter.c does through ioctls, done through pfctl, one anchor per
// session, `ftp-proxy/<instance id>.<session>`, so pf.conf needs `anchor "ftp-proxy/*"`. Each negotiation loads the
// anchor's whole ruleset (pfctl commits it as one transaction, replacing the previous two rules); the end
// of a session loads it empty, and pf drops the empty anchor. pfctl text rather than raw ioctls, because
// the ioctl ABI changes between releases (BSDRP#35) and the text is what admins read in `pfctl -sr`.
import { execa } from 'execa';
import { type FirewallBackend, FirewallError, isRange, type Owner, ownerTag, parseOwnerTag, type Pinhole, PinholeKeys, type RuleOptions } from './backend.js';
import { aliveIds, Instance, type InstanceIdentity, instanceAlive, type Liveness } from './instance.js';

export const PF_ANCHOR = 'ftp-proxy';

/** Routing domains: the client socket's (SO_RTABLE) and the proxy's own (getrtable()); 0 unless set. */
export interface Rdomains {
  client: number;
  proxy: number;
}

/**
 * The two rules of a pinhole, as pf.conf(5) text (spec section 3):
 *   rdr: pass in  quick on rdomain R af proto tcp from FROM to TO port PP flags S/SA keep state (max 1) rtable T rdr-to RDR port P
 *   nat: pass out quick on rdomain R af proto tcp from FROM to RDR port P flags S/SA keep state (max 1) nat-to NAT [port 20]
 * -v adds `log`, -vv `log (all)`, -q `set queue Q`; -T makes them `match` rules without `quick` or
 * `keep state` (pfctl refuses keep state on match rules) and adds `tag T`.
 *
 * A range pinhole (tls_client passthrough) matches `port LOW:HIGH` (pf.conf(5): the inclusive range),
 * and rdr-to names no port, so the port is kept; `keep state` without (max 1): any number of
 * connections, for as long as the session's anchor holds the rules.
 */
export function pfRules(p: Pinhole, o: RuleOptions, rd: Rdomains = p.rdomains ?? { client: 0, proxy: 0 }): [string, string] {
  // Passive (and range): the SYN arrives from the client's rdomain and leaves in the proxy's; active the other way.
  const range = isRange(p);
  const [rdrOn, rdrTable, natOn] = p.kind === 'passive' || range ? [rd.client, rd.proxy, rd.proxy] : [rd.proxy, rd.client, rd.client];
  const af = p.family === 4 ? 'inet' : 'inet6';
  const head = (dir: 'in' | 'out', on: number): string => {
    const w: string[] = [o.tag !== undefined ? 'match' : 'pass', dir];
    if (o.log === 1) w.push('log');
    if (o.log === 2) w.push('log (all)');
    if (o.tag === undefined) w.push('quick');
    w.push(`on rdomain ${on}`, af, 'proto tcp');
    return w.join(' ');
  };
  const opts = (): string => {
    const w = ['flags S/SA'];
    if (o.queue !== undefined) w.push(`set queue ${o.queue}`);
    if (o.tag === undefined) w.push(range ? 'keep state' : 'keep state (max 1)');
    else w.push(`tag ${o.tag}`);
    return w.join(' ');
  };
  const [toPort, rdrPort, rdrTo] = range
    ? [`port ${p.toPort}:${p.toPortHigh ?? p.toPort}`, `port ${p.toPort}:${p.toPortHigh ?? p.toPort}`, p.rdrTo]
    : [`port = ${p.toPort}`, `port = ${p.rdrPort}`, `${p.rdrTo} port ${p.rdrPort}`];
  const rdr = `${head('in', rdrOn)} from ${p.from} to ${p.to} ${toPort} ${opts()} rtable ${rdrTable} rdr-to ${rdrTo}`;
  const nat = `${head('out', natOn)} from ${p.from} to ${p.rdrTo} ${rdrPort} ${opts()} nat-to ${p.natFrom}${p.natPort !== undefined ? ` port ${p.natPort}` : ''}`;
  return [rdr, nat];
}

/**
 * A local pinhole (data_mode): one rule, the rdr-to to the proxy's own listener; no nat-to (the
 * connection keeps its source) and no pass out (it ends on this host). The SYN comes in on the side of
 * its peer: the client's rdomain for the client leg, the proxy's for the server leg.
 */
export function pfLocalRule(p: Pinhole, o: RuleOptions, rd: Rdomains = p.rdomains ?? { client: 0, proxy: 0 }): string {
  const on = p.side === 'server' ? rd.proxy : rd.client;
  const w: string[] = [o.tag !== undefined ? 'match' : 'pass', 'in'];
  if (o.log === 1) w.push('log');
  if (o.log === 2) w.push('log (all)');
  if (o.tag === undefined) w.push('quick');
  w.push(`on rdomain ${on}`, p.family === 4 ? 'inet' : 'inet6', 'proto tcp');
  const opts = ['flags S/SA'];
  if (o.queue !== undefined) opts.push(`set queue ${o.queue}`);
  if (o.tag === undefined) opts.push('keep state (max 1)');
  else opts.push(`tag ${o.tag}`);
  return `${w.join(' ')} from ${p.from} to ${p.to} port = ${p.toPort} ${opts.join(' ')} rdr-to ${p.rdrTo} port ${p.rdrPort}`;
}

export type PfctlRun = (args: string[], input?: string) => Promise<{ exitCode: number; stdout: string; stderr: string }>;

export interface PfOptions {
  rules: RuleOptions;
  /** The pfctl to run (tests put a fake one on PATH). */
  pfctl?: string;
  /** This instance's identity (default: a new random id, held as a unix socket). */
  instance?: InstanceIdentity;
  /** Is the instance with this id running? (for the sweep) */
  isAlive?: Liveness;
  warn?: (message: string) => void;
}

export class PfBackend implements FirewallBackend {
  readonly name = 'pf';
  private readonly identity: InstanceIdentity;
  /** Anchors this instance has loaded rules into and not yet emptied. */
  private readonly loaded = new Set<string>();
  /** pf takes two anchors' identical rdr rules (the first wins): a proxy port drawn twice is refused here. */
  private readonly keys = new PinholeKeys();

  constructor(private readonly o: PfOptions) {
    this.identity = o.instance ?? new Instance();
  }

  get instance(): string {
    return this.identity.id;
  }

  private anchor(owner: Owner): string {
    return `${PF_ANCHOR}/${ownerTag(owner)}`;
  }

  private async pfctl(args: string[], input?: string): Promise<string> {
    const r = await execa(this.o.pfctl ?? 'pfctl', args, { input: input ?? '', reject: false });
    if (r.failed) {
      const msg = String(r.stderr ?? '').trim().split('\n')[0] || String(r.shortMessage ?? 'pfctl failed');
      throw new FirewallError(`pfctl ${args.join(' ')}: ${msg}`, input);
    }
    return String(r.stdout ?? '');
  }

  /** pf must be enabled (OpenBSD's "pf is disabled"), pf.conf should hold the anchor; sweep dead anchors. */
  async init(): Promise<void> {
    const info = await this.pfctl(['-s', 'info']);
    if (!/Status:\s*Enabled/.test(info)) throw new FirewallError('pf is disabled');
    const rules = await this.pfctl(['-s', 'rules']);
    if (!rules.includes(`anchor "${PF_ANCHOR}/*"`)) {
      this.o.warn?.(`pf: the main ruleset has no anchor "${PF_ANCHOR}/*": data connections will not be passed (see pf-examples/)`);
    }
    await this.identity.claim();
    await this.sweep();
  }

  async replace(owner: Owner, pinholes: Pinhole[]): Promise<void> {
    const text = pinholes.flatMap((p) => (p.kind === 'local' ? [pfLocalRule(p, this.o.rules)] : pfRules(p, this.o.rules))).join('\n') + '\n';
    const anchor = this.anchor(owner);
    this.keys.claim(ownerTag(owner), pinholes);
    await this.pfctl(['-a', anchor, '-f', '-'], text);
    this.loaded.add(anchor);
  }

  async clear(owner: Owner): Promise<void> {
    const anchor = this.anchor(owner);
    this.keys.release(ownerTag(owner));
    if (!this.loaded.has(anchor)) return;
    this.loaded.delete(anchor);
    await this.empty(anchor);
  }

  async close(): Promise<void> {
    const anchors = [...this.loaded];
    this.loaded.clear();
    try {
      for (const a of anchors) await this.empty(a);
    } finally {
      this.identity.release();
    }
  }

  /** Load an empty ruleset: pf then removes the anchor (what end_session does on OpenBSD). */
  private async empty(anchor: string): Promise<void> {
    await this.pfctl(['-a', anchor, '-f', '-'], '');
  }

  /** Anchors `ftp-proxy/<id>.<session>` of instances proven dead (a crash), never our own. */
  private async sweep(): Promise<void> {
    const out = await this.pfctl(['-a', PF_ANCHOR, '-s', 'Anchors']);
    const found = out
      .split('\n')
      .map((l) => l.trim())
      .map((a) => ({ anchor: a, owner: a.startsWith(`${PF_ANCHOR}/`) ? parseOwnerTag(a.slice(PF_ANCHOR.length + 1)) : null }))
      .filter((a) => a.owner !== null && a.owner.instance !== this.instance);
    const alive = await aliveIds(
      found.map((a) => a.owner!.instance),
      this.o.isAlive ?? instanceAlive,
    );
    const stale = found.filter((a) => alive.get(a.owner!.instance) === false).map((a) => a.anchor);
    for (const a of stale) await this.empty(a);
    if (stale.length) this.o.warn?.(`pf: emptied ${stale.length} stale anchor(s) left by dead instances`);
  }
}
