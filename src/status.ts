// `ftp-proxy status`: the live sessions and their pinholes as the firewall holds them right now, read
// from the kernel (nft's table, iptables-save and xt_recent, pfctl), never from a daemon's memory, the
// way `pfctl -a 'ftp-proxy/*' -sr` answers on OpenBSD. Parsing is pure; reading is at the bottom.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { execa } from 'execa';
import { type BackendName, type BackendStatus, describePinhole } from './firewall/backend.js';
import { aliveIds, livenessName } from './firewall/instance.js';
import { iptablesStatus, ip6Command } from './firewall/iptables.js';
import { createNftRunner, type NftRunner } from './firewall/nft-runner.js';
import { isEnoent, NFT_TABLE, type NftJson, nftStatus } from './firewall/nftables.js';
import { PF_ANCHOR } from './firewall/pf.js';
import { hostPort } from './net/address.js';
import { describeSession, readSessions, type SessionInfo } from './status-sessions.js';
import { processTcpSockets, type TcpSocket } from './net/sockets.js';

export type { BackendStatus, LiveInstance, LivePinhole, LiveSession } from './firewall/backend.js';
export { iptablesStatus, nftStatus };

// ---- text ----


export function formatStatus(statuses: BackendStatus[]): string {
  const out: string[] = [];
  for (const st of statuses) {
    if (st.backend === 'pf') {
      out.push(`pf: anchors ${PF_ANCHOR}/* (pfctl -a '${PF_ANCHOR}/*' -sr)`);
      out.push(st.text?.trim() ? st.text.trimEnd() : '  no pinholes');
      continue;
    }
    const where = st.backend === 'nftables' ? `table inet ${NFT_TABLE}` : 'chains FTPPROXY-* and FTPP-<instance>-<session>-*';
    if (!st.present && !st.sessions.length) {
      out.push(`${st.backend}: no ${where}: no ftp-proxy instance uses ${st.backend}`);
      continue;
    }
    out.push(`${st.backend}: ${where}`);
    for (const i of st.instances) {
      const listen = i.sockets.filter((s) => s.state === 'listen').map((s) => hostPort(s.local, s.localPort));
      const conns = i.sockets.filter((s) => s.state === 'established');
      const pid = i.pid !== null ? ` (pid ${i.pid})` : '';
      let line = `instance ${i.id}${pid}: ${i.running ? 'running' : 'gone (the next ftp-proxy to start removes its objects)'}`;
      if (listen.length) line += `, listening on ${listen.join(' ')}`;
      // Both legs of every session (client and server side): the kernel does not say which is which.
      if (i.running && i.sockets.length) line += `, ${conns.length} control-channel TCP connection${conns.length === 1 ? '' : 's'}`;
      out.push(line);
      for (const c of conns) out.push(`  tcp ${hostPort(c.remote, c.remotePort)} <-> ${hostPort(c.local, c.localPort)}`);
      for (const s of i.sessions ?? []) out.push(`  ${describeSession(s as SessionInfo)}`);
    }
    if (!st.sessions.length) out.push('no pinholes');
    for (const s of st.sessions) {
      out.push(`session ${s.instance}.${s.session}: ${s.pinholes.length} pinhole${s.pinholes.length === 1 ? '' : 's'}`);
      for (const p of s.pinholes) {
        const state =
          p.state === 'waiting'
            ? 'waiting for its connection'
            : p.state === 'used'
              ? 'used (its one connection came)'
              : p.state === 'open'
                ? 'open while its session lasts (tls_client passthrough: any number of connections)'
                : 'state unknown';
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
  /** Is the instance with this id running? */
  alive?: (id: string) => Promise<boolean>;
  /** The sessions a running instance reports (TLS legs, data path); null when it does not answer. */
  sessions?: (id: string) => Promise<SessionInfo[] | null>;
  /** The pid of the process that holds an instance's name, null when not found. */
  pidOf?: (id: string) => number | null;
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
      const listing = await (r.nft ?? readNft)();
      const alive = await aliveIds(nftStatus(listing, () => true).instances.map((i) => i.id), r.alive);
      out.push(nftStatus(listing, (id) => alive.get(id) ?? true));
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
    if (saves) {
      const alive = await aliveIds(iptablesStatus(saves, () => null, now, () => true).instances.map((i) => i.id), r.alive);
      out.push(iptablesStatus(saves, r.recent ?? readRecent, now, (id) => alive.get(id) ?? true));
    }
    else if (backend === 'iptables') throw new Error('iptables-save not found: apt-get install iptables');
  }
  if (!out.length) throw new Error(`cannot read the firewall: ${errors.join('; ') || 'no backend answered'}`);
  const pidOf = r.pidOf ?? instancePid;
  for (const st of out) {
    for (const i of st.instances) {
      if (!i.running) continue;
      i.pid = pidOf(i.id);
      if (i.pid !== null) i.sockets = sockets(i.pid);
      const sessions = await (r.sessions ?? readSessions)(i.id);
      if (sessions) i.sessions = sessions;
    }
  }
  return out;
}

/** The inode of the unix socket bound to `name` (abstract names as "@..."), from /proc/net/unix text. */
export function unixSocketInode(procNetUnix: string, name: string): string | null {
  const want = name.replace(/^\0/, '@');
  for (const line of procNetUnix.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // Node binds an abstract name padded with NULs to the whole sun_path, which the kernel shows as '@'s.
    if (f.length >= 8 && f[7]!.startsWith(want) && /^@*$/.test(f[7]!.slice(want.length))) return f[6]!;
  }
  return null;
}

/** Which process holds instance `id`'s name (Linux: the socket's inode among every process's fds). */
export function instancePid(id: string): number | null {
  let inode: string | null;
  try {
    inode = unixSocketInode(readFileSync('/proc/net/unix', 'utf8'), livenessName(id));
  } catch {
    return null;
  }
  if (!inode) return null;
  const target = `socket:[${inode}]`;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return Number(pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  return null;
}
