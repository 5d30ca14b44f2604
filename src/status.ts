// `ftp-proxy status`: the live sessions and their pinholes as the firewall holds them right now, read
// from the kernel (nft's table, iptables-save and xt_recent, pfctl), never from a daemon's memory, the
// way `pfctl -a 'ftp-proxy/*' -sr` answers on OpenBSD. Parsing is pure; reading is at the bottom.
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { describePinhole, type Pinhole, processAlive } from './firewall/backend.js';
import type { BackendName } from './firewall/choose.js';
import { createNftRunner, type NftRunner } from './firewall/nft-runner.js';
import { ip6Command } from './firewall/iptables.js';
import { instancePids, isEnoent, NFT_TABLE, type NftJson } from './firewall/nftables.js';
import { PF_ANCHOR } from './firewall/pf.js';
import { hostPort } from './net/address.js';
import { processTcpSockets, type TcpSocket } from './net/sockets.js';

/** A pinhole as the kernel holds it: the addresses of a Pinhole, and what the kernel says of its use. */
export interface LivePinhole extends Pick<Pinhole, 'from' | 'to' | 'toPort' | 'rdrTo' | 'rdrPort' | 'natFrom' | 'natPort'> {
  /** No source NAT: a data_mode pinhole to the proxy's own listener (the proxy joins the two legs). */
  local?: true;
  /** waiting: no data connection yet; used: its one connection came (a second would be refused). */
  state: 'waiting' | 'used' | 'unknown';
  /** Seconds until the kernel drops the pinhole by itself; null when it does not say. */
  expires: number | null;
}

export interface LiveSession {
  pid: number;
  session: number;
  pinholes: LivePinhole[];
}

export interface LiveInstance {
  pid: number;
  running: boolean;
  /** TCP sockets of the process (Linux, when running): listeners and control connections. */
  sockets: TcpSocket[];
}

export interface BackendStatus {
  backend: BackendName;
  /** Whether the proxy's objects exist at all (the table, the parent chains). */
  present: boolean;
  instances: LiveInstance[];
  sessions: LiveSession[];
  /** pf: pfctl's own listing, printed as it is. */
  text?: string;
}

// ---- nftables ----

type Key = (string | number)[];
interface Elem {
  key: Key;
  value: unknown;
  owner: string;
  expires: number | null;
}

function nftElements(listing: NftJson | null, name: string): Elem[] {
  const out: Elem[] = [];
  for (const item of listing?.nftables ?? []) {
    const obj = item.set ?? item.map;
    if (obj?.name !== name) continue;
    for (const raw of obj.elem ?? []) {
      const [k, v] = Array.isArray(raw) ? raw : [raw, undefined];
      const e = (k as { elem?: { val?: { concat?: unknown[] }; comment?: string; expires?: number } }).elem;
      const c = e?.val?.concat;
      if (!e || !c || (c.length !== 3 && c.length !== 5)) continue;
      out.push({ key: c.map((x, i) => (i % 3 === 2 ? Number(x) : String(x))), value: v, owner: e.comment ?? '', expires: typeof e.expires === 'number' ? e.expires : null });
    }
  }
  return out;
}

const keyStr = (k: Key): string => k.join(' . ');

/** Sessions and pinholes from `nft -j list table inet ftp-proxy`; processes judged by `alive`. */
export function nftStatus(listing: NftJson | null, alive: (pid: number) => boolean): BackendStatus {
  const sessions = new Map<string, LiveSession>();
  const pids = new Set(instancePids(listing));
  for (const f of [4, 6]) {
    // not yet used: in once (plain instances) or oncev (instances with -v, -T or -q)
    const once = new Set([...nftElements(listing, `once${f}`), ...nftElements(listing, `oncev${f}`)].map((e) => keyStr(e.key)));
    const snat = new Map<string, { owner: string; from: string; port?: number }>();
    // keyed on the tuple after DNAT and the original destination: C . S . p . OS . pp
    for (const e of nftElements(listing, `from${f}`)) snat.set(keyStr(e.key), { owner: e.owner, from: String(e.value) });
    for (const e of nftElements(listing, `fromport${f}`)) {
      const c = (e.value as { concat?: unknown[] }).concat ?? [];
      snat.set(keyStr(e.key), { owner: e.owner, from: String(c[0]), port: Number(c[1]) });
    }
    for (const e of nftElements(listing, `dnat${f}`)) {
      const m = /^(\d+)\.(\d+)$/.exec(e.owner);
      if (!m) continue;
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
      const s = sessions.get(e.owner) ?? { pid: Number(m[1]), session: Number(m[2]), pinholes: [] };
      s.pinholes.push(p);
      sessions.set(e.owner, s);
      pids.add(s.pid);
    }
  }
  return {
    backend: 'nftables',
    present: listing !== null,
    instances: [...pids].sort((a, b) => a - b).map((pid) => ({ pid, running: alive(pid), sockets: [] })),
    sessions: sortSessions([...sessions.values()]),
  };
}

// ---- iptables ----

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
export function iptablesStatus(saves: string[], used: (list: string) => boolean | null, now: Date, alive: (pid: number) => boolean): BackendStatus {
  const sessions = new Map<string, LiveSession>();
  const pids = new Set<number>();
  let present = false;
  for (const save of saves) {
    if (/^:FTPPROXY-(PRE|POST|FWD) /m.test(save)) present = true;
    for (const m of save.matchAll(/^:FTPP-(\d+)-(\d+)-[DSFM][AB] /gm)) pids.add(Number(m[1]));
    const snat = new Map<string, { from: string; port?: number }>();
    for (const m of save.matchAll(/^-A FTPP-(\d+-\d+)-S[AB] (.*-j SNAT --to-source (\S+).*)$/gm)) {
      const r = m[2]!;
      const key = `${m[1]} ${bare(field(r, /-s (\S+)/) ?? '')} ${bare(field(r, /-d (\S+)/) ?? '')} ${field(r, /--dport (\d+)/)}`;
      const hp = splitHostPort(m[3]!);
      snat.set(key, hp.port !== undefined ? { from: hp.address, port: hp.port } : { from: hp.address });
    }
    for (const m of save.matchAll(/^-A FTPP-((\d+)-(\d+))-D[AB] (.*-j DNAT --to-destination (\S+).*)$/gm)) {
      const r = m[4]!;
      const rdr = splitHostPort(m[5]!);
      const from = bare(field(r, /-s (\S+)/) ?? '?');
      const to = bare(field(r, /-d (\S+)/) ?? '?');
      const toPort = Number(field(r, /--dport (\d+)/) ?? 0);
      const stop = field(r, /--datestop (\S+)/);
      const list = field(r, /--name (\S+)/);
      const nat = snat.get(`${m[1]} ${from} ${rdr.address} ${rdr.port}`);
      const u = list ? used(list) : null;
      const expires = stop ? Math.round((Date.parse(`${stop}Z`) - now.getTime()) / 1000) : null;
      const p: LivePinhole = {
        from,
        to,
        toPort,
        rdrTo: rdr.address,
        rdrPort: rdr.port ?? 0,
        natFrom: nat?.from ?? from,
        state: u === null ? 'unknown' : u ? 'used' : 'waiting',
        expires: expires === null || Number.isNaN(expires) ? null : expires,
      };
      if (nat?.port !== undefined) p.natPort = nat.port;
      if (!nat) p.local = true;
      const owner = `${m[2]}.${m[3]}`;
      const s = sessions.get(owner) ?? { pid: Number(m[2]), session: Number(m[3]), pinholes: [] };
      s.pinholes.push(p);
      sessions.set(owner, s);
    }
  }
  return {
    backend: 'iptables',
    present,
    instances: [...pids].sort((a, b) => a - b).map((pid) => ({ pid, running: alive(pid), sockets: [] })),
    sessions: sortSessions([...sessions.values()]),
  };
}

function sortSessions(s: LiveSession[]): LiveSession[] {
  return s.sort((a, b) => a.pid - b.pid || a.session - b.session);
}

// ---- text ----


export function formatStatus(statuses: BackendStatus[]): string {
  const out: string[] = [];
  for (const st of statuses) {
    if (st.backend === 'pf') {
      out.push(`pf: anchors ${PF_ANCHOR}/* (pfctl -a '${PF_ANCHOR}/*' -sr)`);
      out.push(st.text?.trim() ? st.text.trimEnd() : '  no pinholes');
      continue;
    }
    const where = st.backend === 'nftables' ? `table inet ${NFT_TABLE}` : 'chains FTPPROXY-* and FTPP-<pid>-<session>-*';
    if (!st.present && !st.sessions.length) {
      out.push(`${st.backend}: no ${where}: no ftp-proxy instance uses ${st.backend}`);
      continue;
    }
    out.push(`${st.backend}: ${where}`);
    for (const i of st.instances) {
      const listen = i.sockets.filter((s) => s.state === 'listen').map((s) => hostPort(s.local, s.localPort));
      const conns = i.sockets.filter((s) => s.state === 'established');
      let line = `instance ${i.pid}: ${i.running ? 'running' : 'gone (the next ftp-proxy to start removes its objects)'}`;
      if (listen.length) line += `, listening on ${listen.join(' ')}`;
      // Both legs of every session (client and server side): the kernel does not say which is which.
      if (i.running && i.sockets.length) line += `, ${conns.length} control-channel TCP connection${conns.length === 1 ? '' : 's'}`;
      out.push(line);
      for (const c of conns) out.push(`  tcp ${hostPort(c.remote, c.remotePort)} <-> ${hostPort(c.local, c.localPort)}`);
    }
    if (!st.sessions.length) out.push('no pinholes');
    for (const s of st.sessions) {
      out.push(`session ${s.pid}.${s.session}: ${s.pinholes.length} pinhole${s.pinholes.length === 1 ? '' : 's'}`);
      for (const p of s.pinholes) {
        const state = p.state === 'waiting' ? 'waiting for its connection' : p.state === 'used' ? 'used (its one connection came)' : 'state unknown';
        const exp = p.expires === null ? '' : p.expires > 0 ? `, expires in ${p.expires}s` : ', expired';
        const where = p.local ? ' (to the proxy itself, source kept: data_mode)' : '';
        out.push(`  ${describePinhole(p)}${where}  ${state}${exp}`);
      }
    }
  }
  return out.join('\n') + '\n';
}

// ---- reading the kernel ----

export interface StatusReaders {
  nft?: () => Promise<NftJson | null>;
  iptablesSave?: () => Promise<string[] | null>;
  recent?: (list: string) => boolean | null;
  pfctl?: () => Promise<string>;
  alive?: (pid: number) => boolean;
  sockets?: (pid: number) => TcpSocket[];
  now?: () => Date;
}

async function readNft(): Promise<NftJson | null> {
  let runner: NftRunner | null = null;
  try {
    runner = createNftRunner();
    return (await runner.json(`list table inet ${NFT_TABLE}`)) as NftJson;
  } catch (e) {
    if (isEnoent(e)) return null;
    throw e;
  } finally {
    runner?.close();
  }
}

/** iptables-save and ip6tables-save (the variant FTP_PROXY_IPTABLES names); null when iptables is absent. */
async function readIptables(): Promise<string[] | null> {
  const base = process.env.FTP_PROXY_IPTABLES ?? 'iptables';
  const v6 = ip6Command(base);
  const out: string[] = [];
  for (const cmd of [base, v6]) {
    const r = await execa(`${cmd}-save`, [], { reject: false }).catch(() => null);
    if (!r || r.failed) {
      if (cmd === base) {
        const why = String(r?.stderr ?? '').trim().split('\n')[0];
        if (!r || (r as { code?: string }).code === 'ENOENT' || /not found|ENOENT/.test(String(r.shortMessage))) return null;
        throw new Error(`${cmd}-save: ${why || 'failed'}`);
      }
      continue;
    }
    out.push(String(r.stdout));
  }
  return out;
}

function readRecent(list: string): boolean | null {
  try {
    return readFileSync(`/proc/net/xt_recent/${list}`, 'utf8').trim().length > 0;
  } catch {
    return null;
  }
}

async function readPf(): Promise<string> {
  const r = await execa('pfctl', ['-a', `${PF_ANCHOR}/*`, '-sr'], { reject: false });
  if (r.failed) throw new Error(`pfctl -a '${PF_ANCHOR}/*' -sr: ${String(r.stderr ?? r.shortMessage).trim().split('\n')[0]}`);
  return String(r.stdout);
}

/**
 * Read the firewall(s): with a backend, that one; with "auto", pf on OpenBSD and on Linux every one that
 * answers (an iptables-nft host may run instances on both).
 */
export async function readStatus(backend: BackendName | 'auto', r: StatusReaders = {}, platform = process.platform): Promise<BackendStatus[]> {
  const alive = r.alive ?? processAlive;
  const sockets = r.sockets ?? processTcpSockets;
  const now = r.now?.() ?? new Date();
  const want = (b: BackendName): boolean => backend === b || (backend === 'auto' && (b === 'pf') === (platform === 'openbsd'));
  const out: BackendStatus[] = [];
  if (want('pf')) {
    out.push({ backend: 'pf', present: true, instances: [], sessions: [], text: await (r.pfctl ?? readPf)() });
  }
  const errors: string[] = [];
  if (want('nftables')) {
    try {
      out.push(nftStatus(await (r.nft ?? readNft)(), alive));
    } catch (e) {
      if (backend === 'nftables') throw e;
      errors.push(`nftables: ${(e as Error).message}`);
    }
  }
  if (want('iptables')) {
    const saves = await (r.iptablesSave ?? readIptables)().catch((e: Error) => {
      if (backend === 'iptables') throw e;
      errors.push(`iptables: ${e.message}`);
      return null;
    });
    if (saves) out.push(iptablesStatus(saves, r.recent ?? readRecent, now, alive));
    else if (backend === 'iptables') throw new Error('iptables-save not found: apt-get install iptables');
  }
  if (!out.length) throw new Error(`cannot read the firewall: ${errors.join('; ') || 'no backend answered'}`);
  for (const st of out) for (const i of st.instances) if (i.running) i.sockets = sockets(i.pid);
  return out;
}
