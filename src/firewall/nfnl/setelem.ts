// One nf_tables transaction of set-element changes as nfnetlink bytes: BATCH_BEGIN, one
// NEWSETELEM/DELSETELEM per element, BATCH_END. The elements are those src/firewall/nftables.ts writes
// as nft text (the same set names, keys and values, in the same textual form), so the fast path and
// the script path cannot drift apart: see opsToScript() and the unit tests, which compare the bytes
// with what nft itself sends for that text (test/fixtures/nfnl/).
// Layouts: <linux/netfilter/nf_tables.h>; the user data of an element is libnftnl's TLV list.
import { isIPv4, isIPv6 } from 'node:net';
import { NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NlWriter } from './netlink.js';

export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 16;
export const NFNL_MSG_BATCH_END = 17;
export const NFT_MSG_NEWSETELEM = 12;
export const NFT_MSG_DELSETELEM = 14;
export const NFPROTO_INET = 1;

const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_SET_ELEM_USERDATA = 6;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;
const NFT_JUMP = -3;
const NFT_GOTO = -4;
/** libnftnl's user-data TLV for an element's comment (NFTNL_UDATA_SET_ELEM_COMMENT). */
const NFTNL_UDATA_SET_ELEM_COMMENT = 0;
/** nft refuses longer comments (NFT_USERDATA_MAXLEN is 256 for the whole TLV list). */
const COMMENT_MAX = 128;

/**
 * One element change, in nft's words:
 * - create: `create element T set { key timeout Ns comment "c" : value }` (EEXIST when the key is taken)
 * - add:    `add element T set { key timeout Ns : value }` (a no-op when the key is there)
 * - delete: `delete element T set { key }` (ENOENT when it is not)
 */
export interface ElementOp {
  op: 'create' | 'add' | 'delete';
  set: string;
  /** `a . b . port`: addresses (v4 or v6) and ports, joined with " . " as nft writes a concatenation. */
  key: string;
  /** Map data: `address`, `address . port`, or a verdict `goto chain` / `jump chain`. */
  value?: string;
  timeoutMs?: number;
  comment?: string;
}

export interface BatchOptions {
  table: string;
  /** The sequence number of BATCH_BEGIN; element i gets seq + 1 + i, BATCH_END the one after. */
  seq: number;
  /** NLM_F_ACK on every element message: the kernel then answers each one, success or not. */
  ack: boolean;
}

/** One component of a key or value: an address (4 or 16 bytes) or a port (2 bytes, big-endian). */
function component(text: string): Buffer {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (isIPv6(text)) return ipv6Bytes(text);
  if (/^\d{1,5}$/.test(text) && Number(text) <= 0xffff) {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(Number(text));
    return b;
  }
  throw new Error(`nfnl: cannot encode ${JSON.stringify(text)} (an address or a port was expected)`);
}

function ipv6Bytes(text: string): Buffer {
  // Expand "::" and an embedded dotted quad; isIPv6 has vouched for the syntax.
  let s = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const q = v4[1]!.split('.').map(Number);
    s = s.slice(0, -v4[1]!.length) + `${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/**
 * The register bytes of a key or value: a concatenation puts each component in its own 4-byte-aligned
 * slot (a port takes 4 bytes, zero-padded); a single component is its bare bytes.
 */
export function concatBytes(text: string): Buffer {
  const parts = text.split(' . ').map(component);
  if (parts.length === 1) return parts[0]!;
  const out = Buffer.alloc(parts.reduce((n, p) => n + ((p.length + 3) & ~3), 0));
  let off = 0;
  for (const p of parts) {
    p.copy(out, off);
    off += (p.length + 3) & ~3;
  }
  return out;
}

function commentTlv(comment: string): Buffer {
  const text = Buffer.from(`${comment}\0`, 'utf8');
  if (text.length - 1 > COMMENT_MAX) throw new Error(`nfnl: comment longer than ${COMMENT_MAX} bytes`);
  return Buffer.concat([Buffer.from([NFTNL_UDATA_SET_ELEM_COMMENT, text.length]), text]);
}

function writeData(w: NlWriter, value: string): void {
  const verdict = /^(goto|jump) (\S+)$/.exec(value);
  w.nest(NFTA_SET_ELEM_DATA, (d) => {
    if (!verdict) {
      d.attr(NFTA_DATA_VALUE, concatBytes(value));
      return;
    }
    d.nest(NFTA_DATA_VERDICT, (v) => {
      v.u32be(NFTA_VERDICT_CODE, verdict[1] === 'goto' ? NFT_GOTO : NFT_JUMP);
      v.str(NFTA_VERDICT_CHAIN, verdict[2]!);
    });
  });
}

function writeElement(w: NlWriter, o: ElementOp): void {
  w.nest(NFTA_SET_ELEM_LIST_ELEMENTS, (list) =>
    list.nest(NFTA_LIST_ELEM, (e) => {
      if (o.op !== 'delete' && o.timeoutMs !== undefined) e.u64be(NFTA_SET_ELEM_TIMEOUT, BigInt(o.timeoutMs));
      e.nest(NFTA_SET_ELEM_KEY, (k) => k.attr(NFTA_DATA_VALUE, concatBytes(o.key)));
      if (o.op !== 'delete' && o.value !== undefined) writeData(e, o.value);
      if (o.op !== 'delete' && o.comment !== undefined) e.attr(NFTA_SET_ELEM_USERDATA, commentTlv(o.comment));
    }),
  );
}

const msgType = (m: number): number => (NFNL_SUBSYS_NFTABLES << 8) | m;

/** The nlmsg type and flags of an op's message (without NLM_F_ACK). */
export function opHeader(o: ElementOp): { type: number; flags: number } {
  if (o.op === 'delete') return { type: msgType(NFT_MSG_DELSETELEM), flags: NLM_F_REQUEST };
  return { type: msgType(NFT_MSG_NEWSETELEM), flags: NLM_F_REQUEST | NLM_F_CREATE | (o.op === 'create' ? NLM_F_EXCL : 0) };
}

/** The whole batch, ready for one sendmsg on a NETLINK_NETFILTER socket. */
export function encodeBatch(ops: readonly ElementOp[], o: BatchOptions): Buffer {
  const w = new NlWriter(256 + ops.length * 160);
  w.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, o.seq, 0, NFNL_SUBSYS_NFTABLES);
  ops.forEach((op, i) => {
    const h = opHeader(op);
    w.message(h.type, h.flags | (o.ack ? NLM_F_ACK : 0), o.seq + 1 + i, NFPROTO_INET, 0, (m) => {
      m.str(NFTA_SET_ELEM_LIST_TABLE, o.table);
      m.str(NFTA_SET_ELEM_LIST_SET, op.set);
      writeElement(m, op);
    });
  });
  w.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, o.seq + 1 + ops.length, 0, NFNL_SUBSYS_NFTABLES);
  return w.bytes();
}

/** The same ops as nft script lines (what libnftables would be given for them). */
export function opsToScript(ops: readonly ElementOp[], table: string): string[] {
  return ops.map((o) => {
    if (o.op === 'delete') return `delete element ${table} ${o.set} { ${o.key} }`;
    const timeout = o.timeoutMs === undefined ? '' : ` timeout ${o.timeoutMs / 1000}s`;
    const comment = o.comment === undefined ? '' : ` comment "${o.comment}"`;
    const value = o.value === undefined ? '' : ` : ${o.value}`;
    return `${o.op} element ${table} ${o.set} { ${o.key}${timeout}${comment}${value} }`;
  });
}
