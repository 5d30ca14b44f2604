// Whether the nftables backend may send its element changes straight over netlink: a socket that
// opens, and a probe element written that way which libnftables then lists exactly as written (key,
// value, timeout, comment) and which goes away again. Anything else, and the backend stays with
// libnftables for everything, as before; the reason goes to the log.
import { type ElementOp } from './setelem.js';
import { type NetlinkSys, NfnlSocket } from './socket.js';

export interface FastPathDeps {
  sys: NetlinkSys;
  /** `inet ftp-proxy` */
  table: string;
  /** The map the probe goes into (address . address . port : address . port), e.g. dnat4. */
  map: string;
  /** libnftables' JSON listing of one map (`list map inet ftp-proxy dnat4`). */
  listMap: (map: string) => Promise<unknown>;
  /** Picks the probe's port (1..49151: never a proxy port, so never a real pinhole's key). */
  random?: () => number;
}

interface JsonElem {
  elem?: { val?: unknown; timeout?: number; comment?: string };
}

/** The probe as libnftables lists it, or null. */
function findProbe(listing: unknown, map: string, port: number, comment: string): { timeout?: number; value?: unknown } | null {
  const items = (listing as { nftables?: { map?: { name: string; elem?: unknown[] } }[] })?.nftables ?? [];
  for (const item of items) {
    if (item.map?.name !== map) continue;
    for (const raw of item.map.elem ?? []) {
      if (!Array.isArray(raw)) continue;
      const e = (raw[0] as JsonElem).elem;
      const key = (e?.val as { concat?: unknown[] })?.concat;
      if (e?.comment === comment && JSON.stringify(key) === JSON.stringify(['0.0.0.0', '0.0.0.0', port])) return { timeout: e.timeout, value: raw[1] };
    }
  }
  return null;
}

/** The open socket when the probe passed; otherwise why not (the socket is closed again). */
export async function startFastPath(d: FastPathDeps): Promise<{ socket: NfnlSocket } | { error: string }> {
  let socket: NfnlSocket;
  try {
    socket = new NfnlSocket(d.sys, { table: d.table });
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
  const port = 1 + Math.floor((d.random ?? Math.random)() * 49151);
  const comment = 'ftp-proxy self-test';
  const key = `0.0.0.0 . 0.0.0.0 . ${port}`;
  const value = `0.0.0.0 . ${port}`;
  const probe: ElementOp = { op: 'create', set: d.map, key, value, timeoutMs: 10000, comment };
  const remove: ElementOp[] = [
    { op: 'add', set: d.map, key, value, timeoutMs: 1000 },
    { op: 'delete', set: d.map, key },
  ];
  try {
    socket.apply([probe]);
    let seen: ReturnType<typeof findProbe>;
    try {
      seen = findProbe(await d.listMap(d.map), d.map, port, comment);
    } finally {
      socket.apply(remove);
    }
    const want = { concat: ['0.0.0.0', port] };
    if (!seen) return fail(socket, `the probe element written over netlink is not in libnftables' listing of ${d.map}`);
    if (seen.timeout !== 10 || JSON.stringify(seen.value) !== JSON.stringify(want))
      return fail(socket, `libnftables lists the probe element as timeout ${String(seen.timeout)}, value ${JSON.stringify(seen.value)}`);
    return { socket };
  } catch (e) {
    return fail(socket, e instanceof Error ? e.message : String(e));
  }
}

function fail(socket: NfnlSocket, error: string): { error: string } {
  socket.close();
  return { error };
}
