// The fast path's socket calls over libc (src/native.ts binds them through koffi): a NETLINK_NETFILTER
// socket bound to a kernel-chosen port id, asking for capped acks (no echo of our request in every
// answer) and extended acks (the kernel's reason, when it gives one).
import { libc } from '../../native.js';
import type { NetlinkSys } from './socket.js';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_NETFILTER = 12;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const MSG_DONTWAIT = 0x40;
/**
 * Room for every answer of a batch (each takes about a kilobyte of socket memory, whatever its size):
 * an answer that does not fit is dropped (ENOBUFS). SO_RCVBUFFORCE passes net.core.rmem_max (we hold
 * CAP_NET_ADMIN); SO_RCVBUF, capped by it, is the fallback.
 */
const RCVBUF = 4 << 20;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;

/** The libc calls used, as src/native.ts types them. */
export interface NetlinkLibc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  close(fd: number): number;
  strerror(errno: number): string;
  errno(): number;
}

const int = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
};

export function netlinkSys(c: NetlinkLibc): NetlinkSys {
  return {
    open() {
      const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
      if (fd < 0) return -c.errno();
      const sa = Buffer.alloc(12); // struct sockaddr_nl: family, pad, port id 0 (the kernel picks), groups 0
      sa.writeUInt16LE(AF_NETLINK, 0);
      if (c.bind(fd, sa, sa.length) < 0) {
        const e = c.errno();
        c.close(fd);
        return -e;
      }
      // Both are optional refinements (old kernels lack them): failures change nothing we rely on.
      c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, int(1), 4);
      c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, int(1), 4);
      if (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, int(RCVBUF), 4) < 0) c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, int(RCVBUF), 4);
      return fd;
    },
    send(fd, buf) {
      const n = c.send(fd, buf, buf.length, 0);
      return n < 0 ? -c.errno() : n;
    },
    recv(fd, buf) {
      const n = c.recv(fd, buf, buf.length, MSG_DONTWAIT);
      return n < 0 ? -c.errno() : n;
    },
    close(fd) {
      c.close(fd);
    },
    strerror: (e) => c.strerror(e),
  };
}

/** The fast path's calls on this host, or null where libc cannot be loaded through koffi. */
export function defaultNetlinkSys(): NetlinkSys | null {
  if (process.platform !== 'linux') return null;
  const c = libc();
  return c ? netlinkSys(c) : null;
}
