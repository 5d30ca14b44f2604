// syslog(3) for Node: datagrams to /dev/log (RFC 3164 format, as glibc's syslog() writes them), so
// rsyslog and journald file each message under facility daemon with its own priority. Node has no
// AF_UNIX datagram sockets, hence the few libc calls through koffi.
import { type Libc, libc } from './native.js';

export const LOG_DAEMON = 3 << 3;

/** What differs between Linux and OpenBSD for a datagram to /dev/log. */
interface Platform {
  cloexec: number;
  dontwait: number;
  nosignal: number;
  /** struct sockaddr_un for `path`. */
  sockaddr(path: string): Buffer;
}

const AF_UNIX = 1;
const SOCK_DGRAM = 2;

export const PLATFORMS: Record<'linux' | 'openbsd', Platform> = {
  linux: {
    cloexec: 0o2000000,
    dontwait: 0x40,
    nosignal: 0x4000,
    sockaddr(path) {
      const a = Buffer.alloc(2 + 108); // sa_family_t, then sun_path[108]
      a.writeUInt16LE(AF_UNIX, 0);
      a.write(path, 2, 'utf8');
      return a.subarray(0, 2 + Buffer.byteLength(path) + 1);
    },
  },
  openbsd: {
    cloexec: 0x8000,
    dontwait: 0x80,
    nosignal: 0x400,
    sockaddr(path) {
      const a = Buffer.alloc(2 + 104); // sun_len, sun_family, then sun_path[104]
      const len = 2 + Buffer.byteLength(path) + 1;
      a.writeUInt8(len, 0);
      a.writeUInt8(AF_UNIX, 1);
      a.write(path, 2, 'utf8');
      return a.subarray(0, len);
    },
  },
};

const platform: Platform = process.platform === 'openbsd' ? PLATFORMS.openbsd : PLATFORMS.linux;

function load(): Libc {
  const c = libc();
  if (!c) throw new Error('libc cannot be loaded');
  return c;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "<PRI>Mmm dd hh:mm:ss ident[pid]: message", the line glibc's syslog() sends. */
export function formatSyslog(pri: number, ident: string, pid: number, message: string, now = new Date()): string {
  const dd = String(now.getDate()).padStart(2, ' ');
  const t = [now.getHours(), now.getMinutes(), now.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
  return `<${pri}>${MONTHS[now.getMonth()]} ${dd} ${t} ${ident}[${pid}]: ${message}`;
}

export class Syslog {
  private fd = -1;
  /** Messages lost because the socket was full or absent (never block the daemon on logging). */
  dropped = 0;

  constructor(
    private readonly ident: string,
    private readonly facility = LOG_DAEMON,
    private readonly path = '/dev/log',
  ) {}

  send(level: number, message: string): void {
    const line = Buffer.from(formatSyslog(this.facility | level, this.ident, process.pid, message));
    const flags = platform.dontwait | platform.nosignal;
    if (this.fd < 0 && !this.open()) {
      this.dropped++;
      return;
    }
    const c = load();
    if (c.send(this.fd, line, line.length, flags) < 0) {
      // The syslog daemon may have restarted: reconnect once, then give up on this message.
      this.closeFd();
      if (!this.open() || c.send(this.fd, line, line.length, flags) < 0) this.dropped++;
    }
  }

  /** Never throws: a daemon whose syslog is unavailable keeps running (and counts what it lost). */
  private open(): boolean {
    let c: Libc;
    try {
      c = load();
    } catch {
      return false;
    }
    const fd = c.socket(AF_UNIX, SOCK_DGRAM | platform.cloexec, 0);
    if (fd < 0) return false;
    const addr = platform.sockaddr(this.path);
    if (c.connect(fd, addr, addr.length) !== 0) {
      c.close(fd);
      return false;
    }
    this.fd = fd;
    return true;
  }

  private closeFd(): void {
    if (this.fd >= 0) load().close(this.fd);
    this.fd = -1;
  }

  close(): void {
    this.closeFd();
  }
}
