// The nftables fast path's I/O: one NETLINK_NETFILTER socket, kept open, on which each negotiation's
// element changes go as one batch (one transaction). nfnetlink handles a batch inside the sendmsg
// call, so by the time send returns every answer is queued on our socket: the reads that follow never
// wait (MSG_DONTWAIT), and the whole exchange costs about what the kernel's commit does, on the
// event loop, with no thread hand-off (libnftables runs on koffi's worker; bench/README.md).
import { FirewallError, PinholeConflict } from '../backend.js';
import { NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, parseAck, parseMessages } from './netlink.js';
import { type ElementOp, encodeBatch, opsToScript } from './setelem.js';

/** The system calls, as thin wrappers that return -errno on failure (src/native.ts). */
export interface NetlinkSys {
  /** socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER), bound, with capped and extended acks. */
  open(): number;
  send(fd: number, buf: Buffer): number;
  /** recv(MSG_DONTWAIT): bytes read, or -errno (-EAGAIN when nothing is queued). */
  recv(fd: number, buf: Buffer): number;
  close(fd: number): void;
  /** strerror(3): the text nft prints ("File exists"). */
  strerror(errno: number): string;
}

const EAGAIN = 11;
const EINTR = 4;
const EEXIST = 17;
const ENOENT = 2;

/** A kernel error on one element of a batch. */
export class NfnlError extends FirewallError {
  constructor(
    message: string,
    readonly errno: number,
    command?: string,
  ) {
    super(message, command);
    this.name = 'NfnlError';
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  4: 'EINTR',
  7: 'E2BIG',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  16: 'EBUSY',
  17: 'EEXIST',
  22: 'EINVAL',
  23: 'ENFILE',
  28: 'ENOSPC',
  34: 'ERANGE',
  75: 'EOVERFLOW',
  90: 'EMSGSIZE',
  95: 'EOPNOTSUPP',
  105: 'ENOBUFS',
};
export const errnoName = (errno: number): string => ERRNO_NAMES[errno] ?? `errno ${errno}`;

/**
 * The most element changes one batch carries here: every one is answered, and the answers must fit the
 * socket's receive buffer (4 MiB asked; about 1 KiB each). A negotiation needs at most a dozen; the
 * removals of sessions ending together are split to fit (nftables.ts); a stop's sweep of every live
 * session goes through libnftables.
 */
export const FAST_MAX_OPS = 1000;

export interface NfnlOptions {
  /** `inet ftp-proxy`: the family is inet (NFPROTO_INET), the name what follows. */
  table: string;
}

export class NfnlSocket {
  private fd: number;
  private seq: number;
  private readonly rx = Buffer.alloc(64 * 1024);

  constructor(
    private readonly sys: NetlinkSys,
    private readonly o: NfnlOptions,
  ) {
    this.fd = sys.open();
    if (this.fd < 0) throw new NfnlError(`nfnetlink: cannot open a netlink socket: ${sys.strerror(-this.fd)} (${errnoName(-this.fd)})`, -this.fd);
    // Distinct from the sequence numbers of whatever else writes on this socket's port (nothing should).
    this.seq = Math.floor(Date.now() / 1000) & 0x7fffffff;
  }

  /**
   * One transaction: all of `ops` or none. Throws PinholeConflict when a `create` found its key taken
   * (EEXIST), NfnlError naming the kernel's errno for anything else (ENOENT: the table or a set is gone).
   */
  apply(ops: readonly ElementOp[]): void {
    if (!ops.length) return;
    if (this.fd < 0) throw new NfnlError('nfnetlink: socket closed', 0);
    if (ops.length > FAST_MAX_OPS) throw new NfnlError(`nfnetlink: ${ops.length} element changes in one batch, more than ${FAST_MAX_OPS}`, 0);
    const first = this.seq;
    this.seq = (this.seq + ops.length + 2) & 0x7fffffff;
    const batch = encodeBatch(ops, { table: this.o.table.replace(/^inet /, ''), seq: first, ack: true });
    const sent = this.sys.send(this.fd, batch);
    if (sent < 0) throw new NfnlError(`nfnetlink: send failed: ${this.sys.strerror(-sent)} (${errnoName(-sent)})`, -sent);
    if (sent !== batch.length) throw new NfnlError(`nfnetlink: short send (${sent} of ${batch.length} bytes)`, 0);

    // Every element message asked for an ack; the batch's BEGIN answers only when the batch as a whole failed.
    const errors = new Map<number, { errno: number; message?: string }>();
    let answered = 0;
    let batchError: { errno: number; message?: string } | null = null;
    while (answered < ops.length && !batchError) {
      const n = this.sys.recv(this.fd, this.rx);
      if (n === -EINTR) continue;
      if (n < 0) {
        if (n === -EAGAIN) throw new NfnlError(`nfnetlink: the kernel answered ${answered} of ${ops.length} messages`, EAGAIN, this.script(ops));
        throw new NfnlError(`nfnetlink: recv failed: ${this.sys.strerror(-n)} (${errnoName(-n)})`, -n);
      }
      for (const m of parseMessages(this.rx.subarray(0, n))) {
        if (m.type === NLMSG_NOOP || m.type === NLMSG_DONE || m.type !== NLMSG_ERROR) continue;
        const ack = parseAck(m);
        const i = (ack.seq - first - 1) >>> 0;
        if (ack.seq === first) {
          if (ack.error) batchError = { errno: -ack.error, message: ack.message };
          continue;
        }
        if (i >= ops.length) continue; // an answer to an earlier batch, left unread: not ours
        answered++;
        if (ack.error) errors.set(i, { errno: -ack.error, message: ack.message });
      }
    }
    if (batchError) throw this.error(batchError.errno, batchError.message, null, ops);
    if (!errors.size) return;
    // The first failure is the cause; later ones may only follow from it.
    const i = Math.min(...errors.keys());
    const e = errors.get(i)!;
    throw this.error(e.errno, e.message, ops[i]!, ops);
  }

  private error(errno: number, message: string | undefined, op: ElementOp | null, ops: readonly ElementOp[]): Error {
    const what = op ? opsToScript([op], this.o.table)[0]! : 'batch';
    const text = `${this.sys.strerror(errno)} (${errnoName(errno)}${message ? `: ${message}` : ''}) (${what})`;
    if (errno === EEXIST && op?.op === 'create') return new PinholeConflict(`Could not process rule: ${text}`);
    return new NfnlError(`Could not process rule: ${text}`, errno, this.script(ops));
  }

  private script(ops: readonly ElementOp[]): string {
    return opsToScript(ops, this.o.table).join('\n') + '\n';
  }

  close(): void {
    if (this.fd >= 0) this.sys.close(this.fd);
    this.fd = -1;
  }
}

export const isNfnlEnoent = (e: unknown): boolean => e instanceof NfnlError && e.errno === ENOENT;
