// Netlink framing, as pure functions over Buffers: message headers (struct nlmsghdr), netfilter's
// nfgenmsg, attributes (struct nlattr: length, type, payload padded to 4 bytes) and the error/ack
// messages the kernel answers with. Layouts: <linux/netlink.h>, <linux/netfilter/nfnetlink.h>.
// Netlink headers are in host byte order (little-endian on every machine we run on); netfilter's
// payloads (addresses, ports, timeouts) are big-endian.

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** In an ack's own header: extended-ack attributes follow the error. */
export const NLM_F_ACK_TLVS = 0x200;
/** In an ack's own header: the request was capped (NETLINK_CAP_ACK), only its header is echoed. */
export const NLM_F_CAPPED = 0x100;
export const NLA_F_NESTED = 0x8000;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
/** NLMSGERR_ATTR_MSG: the kernel's text for an error (extended ack). */
const NLMSGERR_ATTR_MSG = 1;

const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;

export const align4 = (n: number): number => (n + 3) & ~3;

/**
 * Appends netlink messages into one growing buffer (a batch is several messages in one sendmsg).
 * Attributes are written inside the message opened last; nests close in order.
 */
export class NlWriter {
  private buf: Buffer;
  private off = 0;
  private readonly open: number[] = [];

  constructor(size = 1024) {
    this.buf = Buffer.alloc(size);
  }

  private room(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  /** A message with an nfgenmsg header; `body` writes its attributes. */
  message(type: number, flags: number, seq: number, family: number, resId: number, body: (w: NlWriter) => void = () => undefined): this {
    this.room(NLMSG_HDRLEN + NFGENMSG_LEN);
    const start = this.off;
    this.buf.writeUInt16LE(type, start + 4);
    this.buf.writeUInt16LE(flags, start + 6);
    this.buf.writeUInt32LE(seq >>> 0, start + 8);
    this.buf.writeUInt32LE(0, start + 12); // port id: 0, the kernel fills in ours
    this.buf.writeUInt8(family, start + 16);
    this.buf.writeUInt8(0, start + 17); // NFNETLINK_V0
    this.buf.writeUInt16BE(resId, start + 18);
    this.off += NLMSG_HDRLEN + NFGENMSG_LEN;
    body(this);
    this.buf.writeUInt32LE(this.off - start, start);
    return this;
  }

  /** An attribute with a raw payload, padded with zeroes to 4 bytes. */
  attr(type: number, payload: Buffer): this {
    const len = 4 + payload.length;
    this.room(align4(len));
    this.buf.writeUInt16LE(len, this.off);
    this.buf.writeUInt16LE(type, this.off + 2);
    payload.copy(this.buf, this.off + 4);
    this.buf.fill(0, this.off + len, this.off + align4(len));
    this.off += align4(len);
    return this;
  }

  /** A NUL-terminated string attribute (NLA_STRING / NLA_NUL_STRING). */
  str(type: number, s: string): this {
    return this.attr(type, Buffer.from(`${s}\0`, 'utf8'));
  }

  u32be(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.attr(type, b);
  }

  u64be(type: number, v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    return this.attr(type, b);
  }

  /** A nested attribute (NLA_F_NESTED set, as libmnl does); `body` writes what it holds. */
  nest(type: number, body: (w: NlWriter) => void): this {
    this.room(4);
    const start = this.off;
    this.buf.writeUInt16LE(type | NLA_F_NESTED, start + 2);
    this.off += 4;
    this.open.push(start);
    body(this);
    this.open.pop();
    this.buf.writeUInt16LE(this.off - start, start);
    return this;
  }

  /** The bytes written so far (a copy: the writer can be dropped). */
  bytes(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.off));
  }
}

export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the 16-byte header. */
  payload: Buffer;
}

/** Splits a buffer of netlink messages (what one recv returns). Throws on a truncated message. */
export function parseMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) throw new Error(`netlink: truncated message (length ${len} at offset ${off} of ${buf.length})`);
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

export interface NlAttr {
  type: number;
  nested: boolean;
  payload: Buffer;
}

/** The attributes in a run of bytes (a message body after its fixed header, or a nest's payload). */
export function parseAttrs(buf: Buffer): NlAttr[] {
  const out: NlAttr[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2);
    if (len < 4 || off + len > buf.length) throw new Error(`netlink: bad attribute length ${len} at offset ${off}`);
    out.push({ type: type & 0x3fff, nested: (type & NLA_F_NESTED) !== 0, payload: buf.subarray(off + 4, off + len) });
    off += align4(len);
  }
  return out;
}

/** An NLMSG_ERROR message: error 0 is an ack. `seq` is the sequence number of the request it answers. */
export interface NlAck {
  /** 0, or a negative errno. */
  error: number;
  /** The request's type and sequence number, from the echoed header. */
  requestType: number;
  seq: number;
  /** The kernel's extended-ack text, when it gave one. */
  message?: string;
}

export function parseAck(m: NlMessage): NlAck {
  if (m.type !== NLMSG_ERROR || m.payload.length < 4 + NLMSG_HDRLEN) throw new Error(`netlink: not an error message (type ${m.type}, ${m.payload.length} bytes)`);
  const error = m.payload.readInt32LE(0);
  const reqLen = m.payload.readUInt32LE(4);
  const ack: NlAck = { error, requestType: m.payload.readUInt16LE(8), seq: m.payload.readUInt32LE(12) };
  if (m.flags & NLM_F_ACK_TLVS) {
    // The request is echoed whole unless capped (or on success, where only its header comes back).
    const echoed = m.flags & NLM_F_CAPPED || error === 0 ? NLMSG_HDRLEN : align4(reqLen);
    for (const a of parseAttrs(m.payload.subarray(4 + echoed))) {
      if (a.type === NLMSGERR_ATTR_MSG) ack.message = a.payload.toString('utf8').replace(/\0+$/, '');
    }
  }
  return ack;
}
