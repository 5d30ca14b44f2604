// Where was the client going? The control connection reaches the proxy in one of three ways:
//  - nftables/iptables DNAT or REDIRECT to the listener: the kernel's conntrack entry remembers the
//    original destination; getsockopt(SO_ORIGINAL_DST) returns it.
//  - tproxy (or pf divert-to): the packet is not rewritten; the socket's local address *is* the original
//    destination (SO_ORIGINAL_DST then fails or returns the same).
//  - a plain connection to the listener (reverse mode with -b/-p on the public address): the local
//    address again.
// So: SO_ORIGINAL_DST when it answers, else the local address. No flag needed.
import type { Server, Socket } from 'node:net';
import { libc } from '../native.js';
import { canonical } from './address.js';

const SOL_IP = 0;
const SOL_IPV6 = 41;
const SO_ORIGINAL_DST = 80; // linux/netfilter_ipv4.h
const IP6T_SO_ORIGINAL_DST = 80; // linux/netfilter_ipv6/ip6_tables.h
const IP_TRANSPARENT = 19; // linux/in.h
const IPV6_TRANSPARENT = 75; // linux/in6.h
const AF_INET = 2;
const AF_INET6 = 10;

/** libc's socket options exist only on Linux (SO_ORIGINAL_DST, IP_TRANSPARENT). */
const linuxLibc = () => (process.platform === 'linux' ? libc() : null);

/** The file descriptor behind a Node socket or server. Private Node API (`_handle.fd`), Linux only. */
export function fdOf(s: Socket | Server): number | null {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

export interface Endpoint {
  address: string;
  port: number;
}

const buf = Buffer.alloc(28);
const len = new Uint32Array(1);

/** getsockopt(SO_ORIGINAL_DST) / IP6T_SO_ORIGINAL_DST, or null when the connection was not NATed. */
export function soOriginalDst(socket: Socket): Endpoint | null {
  const c = linuxLibc();
  const fd = fdOf(socket);
  if (!c || fd === null) return null;
  const v6 = socket.localFamily === 'IPv6' && !/^::ffff:/i.test(socket.localAddress ?? '');
  len[0] = v6 ? 28 : 16;
  if (c.getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST, buf, len) !== 0) return null;
  return parseSockaddr(buf);
}

/** struct sockaddr_in / sockaddr_in6 (family in host order, port in network order). */
export function parseSockaddr(b: Buffer): Endpoint | null {
  const family = b.readUInt16LE(0);
  const port = b.readUInt16BE(2);
  if (family === AF_INET) return { address: `${b[4]}.${b[5]}.${b[6]}.${b[7]}`, port };
  if (family === AF_INET6) {
    const words: string[] = [];
    for (let i = 0; i < 16; i += 2) words.push(b.readUInt16BE(8 + i).toString(16));
    return { address: canonical(words.join(':')), port };
  }
  return null;
}

/** The destination the client dialled (see the top of this file). */
export function originalDestination(socket: Socket): Endpoint | null {
  const nat = soOriginalDst(socket);
  if (nat) return { address: canonical(nat.address), port: nat.port };
  if (!socket.localAddress || !socket.localPort) return null;
  return { address: canonical(socket.localAddress), port: socket.localPort };
}

/**
 * IP_TRANSPARENT on the listener, so tproxy may hand it connections for any address. Setting it after
 * listen() is enough: the flag is checked when a packet arrives. Needs CAP_NET_ADMIN; without it the
 * proxy still works behind DNAT/REDIRECT, so failure is only reported.
 */
export function setTransparent(server: Server, v6: boolean): boolean {
  const c = linuxLibc();
  const fd = fdOf(server);
  if (!c || fd === null) return false;
  const one = Buffer.from([1, 0, 0, 0]);
  return c.setsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, one, 4) === 0;
}

// OpenBSD: the client socket's routing domain (SO_RTABLE) and the process's own (getrtable()), which
// pf rules name with "on rdomain" and "rtable" (spec section 3). Elsewhere, or if libc will not load,
// both are 0, which is what OpenBSD uses without rdomains too.
const SOL_SOCKET_BSD = 0xffff;
const SO_RTABLE = 0x1021;

export function rdomains(client: Socket): { client: number; proxy: number } {
  const b = process.platform === 'openbsd' ? libc() : null;
  const fd = fdOf(client);
  if (!b?.getrtable || fd === null) return { client: 0, proxy: 0 };
  const out = Buffer.alloc(4);
  const l = new Uint32Array([4]);
  const rc = b.getsockopt(fd, SOL_SOCKET_BSD, SO_RTABLE, out, l);
  return { client: rc === 0 ? out.readInt32LE(0) : 0, proxy: Math.max(0, b.getrtable()) };
}
