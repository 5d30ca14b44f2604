// sd_notify(3) without libsystemd: one datagram per state change to $NOTIFY_SOCKET, so a Type=notify
// unit knows when the listeners and the firewall are up, when a reload runs, and how many sessions are
// live. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
import { libc } from './native.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

/**
 * struct sockaddr_un for NOTIFY_SOCKET: a path, or an abstract name written "@name" (its first byte
 * NUL, and no NUL at the end: the length says where it stops). Null for what systemd never sends.
 */
export function notifySockaddr(value: string | undefined): Buffer | null {
  if (!value || (value[0] !== '/' && value[0] !== '@')) return null;
  const name = Buffer.from(value, 'utf8');
  if (name.length > 107) return null;
  const abstract = value[0] === '@';
  const a = Buffer.alloc(2 + name.length + (abstract ? 0 : 1)); // sa_family_t, then sun_path
  a.writeUInt16LE(AF_UNIX, 0);
  name.copy(a, 2);
  if (abstract) a[2] = 0;
  return a;
}

/** CLOCK_MONOTONIC in µs, which systemd (253+) wants beside RELOADING=1. */
const monotonicUsec = (): bigint => process.hrtime.bigint() / 1000n;

export class SdNotify {
  private readonly addr: Buffer | null;
  private fd = -1;
  private lastStatus = '';
  /** Datagrams that could not be sent (systemd gone, or no libc): never an error for the daemon. */
  failed = 0;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.addr = process.platform === 'linux' ? notifySockaddr(env.NOTIFY_SOCKET) : null;
  }

  get active(): boolean {
    return this.addr !== null;
  }

  ready(status?: string): void {
    if (status !== undefined) this.lastStatus = status;
    this.send(`READY=1\n${status ? `STATUS=${status}\n` : ''}MAINPID=${process.pid}`);
  }

  reloading(): void {
    this.send(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
  }

  stopping(): void {
    this.send('STOPPING=1');
  }

  /** STATUS=, sent only when it changed (callers may ask every second). */
  status(text: string): void {
    if (text === this.lastStatus) return;
    this.lastStatus = text;
    this.send(`STATUS=${text}`);
  }

  send(state: string): boolean {
    if (!this.addr) return false;
    const c = libc();
    if (!c) {
      this.failed++;
      return false;
    }
    if (this.fd < 0) {
      const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        this.failed++;
        return false;
      }
      if (c.connect(fd, this.addr, this.addr.length) !== 0) {
        c.close(fd);
        this.failed++;
        return false;
      }
      this.fd = fd;
    }
    const buf = Buffer.from(state, 'utf8');
    if (c.send(this.fd, buf, buf.length, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      this.close();
      this.failed++;
      return false;
    }
    return true;
  }

  close(): void {
    if (this.fd >= 0) libc()?.close(this.fd);
    this.fd = -1;
  }
}
