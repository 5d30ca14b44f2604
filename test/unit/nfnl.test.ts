// The nfnetlink encoder of the nftables fast path against the bytes nft itself sends for the same
// elements (test/fixtures/nfnl/batches.json, made by capture.mjs there from nft -f under strace), and
// the parsing of the kernel's answers.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NLM_F_ACK, NLMSG_ERROR, NlWriter, parseAck, parseMessages } from '../../src/firewall/nfnl/netlink.js';
import { concatBytes, type ElementOp, encodeBatch, opsToScript } from '../../src/firewall/nfnl/setelem.js';

interface Case {
  name: string;
  ops: ElementOp[];
  script: string[];
  batch: string;
}
const fixtures = JSON.parse(readFileSync(new URL('../fixtures/nfnl/batches.json', import.meta.url), 'utf8')) as { cases: Case[] };

const NEWSETELEM = (10 << 8) | 12;
const NFTA_SET_ELEM_LIST_SET_ID = 4;

/**
 * nft adds NFTA_SET_ELEM_LIST_SET_ID to NEWSETELEM: an id local to its own cache, which the kernel uses
 * only when no set of that name exists (one created earlier in the same batch). Ours name existing sets
 * and leave it out; so does the fixture, once this drops it.
 */
function withoutSetId(batch: Buffer): Buffer {
  const out: Buffer[] = [];
  for (const m of parseMessages(batch)) {
    let body = m.payload;
    if (m.type === NEWSETELEM) {
      // Every attribute but SET_ID, in order, as the original bytes.
      const parts: Buffer[] = [body.subarray(0, 4)];
      let off = 4;
      while (off < body.length) {
        const len = body.readUInt16LE(off);
        const type = body.readUInt16LE(off + 2) & 0x3fff;
        const padded = (len + 3) & ~3;
        if (type !== NFTA_SET_ELEM_LIST_SET_ID) parts.push(body.subarray(off, off + padded));
        off += padded;
      }
      body = Buffer.concat(parts);
    }
    const h = Buffer.alloc(16);
    h.writeUInt32LE(16 + body.length, 0);
    h.writeUInt16LE(m.type, 4);
    h.writeUInt16LE(m.flags, 6);
    h.writeUInt32LE(m.seq, 8);
    h.writeUInt32LE(m.pid, 12);
    out.push(h, body);
  }
  return Buffer.concat(out);
}

describe('nfnetlink set-element batches, byte for byte as nft sends them', () => {
  it('has fixtures', () => expect(fixtures.cases.length).toBeGreaterThanOrEqual(8));

  for (const c of fixtures.cases) {
    it(c.name, () => {
      // The same ops as the nft text the fixture was captured from...
      expect(opsToScript(c.ops, 'inet ftp-proxy')).toEqual(c.script);
      // ...encode to the bytes nft sent for it (nft's batches start at sequence number 0, no acks asked).
      const ours = encodeBatch(c.ops, { table: 'ftp-proxy', seq: 0, ack: false });
      expect(ours.toString('hex')).toBe(withoutSetId(Buffer.from(c.batch, 'hex')).toString('hex'));
    });
  }

  it('asks an ack for every element message, and for none of the batch delimiters', () => {
    const ops = fixtures.cases.find((c) => c.name.startsWith('replace'))!.ops;
    const msgs = parseMessages(encodeBatch(ops, { table: 'ftp-proxy', seq: 1000, ack: true }));
    expect(msgs.map((m) => m.seq)).toEqual([1000, ...ops.map((_, i) => 1001 + i), 1001 + ops.length]);
    expect(msgs.map((m) => (m.flags & NLM_F_ACK) !== 0)).toEqual([false, ...ops.map(() => true), false]);
  });
});

describe('keys and values', () => {
  it.each([
    ['192.168.1.10', 'c0a8010a'],
    ['192.168.1.10 . 21', 'c0a8010a00150000'],
    ['2001:db8::1', '20010db8000000000000000000000001'],
    ['::ffff:192.0.2.1 . 65535', '00000000000000000000ffffc0000201ffff0000'],
    ['::', '00000000000000000000000000000000'],
    ['fe80::1:2 . 10.0.0.1 . 1', 'fe800000000000000000000000010002' + '0a000001' + '00010000'],
  ])('%s', (text, hex) => expect(concatBytes(text).toString('hex')).toBe(hex));

  it.each(['192.168.1', '70000', 'host.example', '1.2.3.4 .5', ''])('refuses %j', (text) => expect(() => concatBytes(text)).toThrow(/cannot encode/));
});

describe('the kernel answers', () => {
  const ackMsg = (error: number, seq: number, flags: number, extra: Buffer = Buffer.alloc(0)): Buffer => {
    const b = Buffer.alloc(16 + 4 + 16);
    b.writeUInt32LE(b.length + extra.length, 0);
    b.writeUInt16LE(NLMSG_ERROR, 4);
    b.writeUInt16LE(flags, 6);
    b.writeUInt32LE(seq, 8);
    b.writeInt32LE(error, 16);
    b.writeUInt32LE(120, 20); // the request's length
    b.writeUInt16LE(NEWSETELEM, 24);
    b.writeUInt32LE(seq, 28);
    return Buffer.concat([b, extra]);
  };

  it('reads an ack and an error with its sequence number', () => {
    const buf = Buffer.concat([ackMsg(0, 7, 0x100), ackMsg(-17, 8, 0x100)]);
    expect(parseMessages(buf).map(parseAck)).toEqual([
      { error: 0, requestType: NEWSETELEM, seq: 7 },
      { error: -17, requestType: NEWSETELEM, seq: 8 },
    ]);
  });

  it("reads the kernel's extended-ack text", () => {
    const w = new NlWriter();
    w.message(0, 0, 0, 0, 0, (m) => m.str(1, 'Set element already exists'));
    const tlv = w.bytes().subarray(20); // just the attribute
    const [m] = parseMessages(ackMsg(-17, 9, 0x100 | 0x200, tlv));
    expect(parseAck(m!)).toEqual({ error: -17, requestType: NEWSETELEM, seq: 9, message: 'Set element already exists' });
  });

  it('refuses a truncated message', () => {
    expect(() => parseMessages(ackMsg(0, 1, 0).subarray(0, 30))).toThrow(/truncated/);
  });
});
