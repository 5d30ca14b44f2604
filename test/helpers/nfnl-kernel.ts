// A fake nfnetlink for unit tests: reads the batch sent to it and answers every message that asks for an
// ack, as the kernel does, all queued before send returns.
import { expect } from 'vitest';
import { NLM_F_ACK, NLMSG_ERROR, parseMessages } from '../../src/firewall/nfnl/netlink.js';
import type { NetlinkSys } from '../../src/firewall/nfnl/socket.js';

const STRERROR: Record<number, string> = { 1: 'Operation not permitted', 2: 'No such file or directory', 17: 'File exists', 11: 'Resource temporarily unavailable' };

function ack(seq: number, type: number, error: number): Buffer {
  const b = Buffer.alloc(36);
  b.writeUInt32LE(36, 0);
  b.writeUInt16LE(NLMSG_ERROR, 4);
  b.writeUInt16LE(0x100, 6); // capped
  b.writeUInt32LE(seq, 8);
  b.writeInt32LE(error, 16);
  b.writeUInt32LE(100, 20);
  b.writeUInt16LE(type, 24);
  b.writeUInt32LE(seq, 28);
  return b;
}

/** Answers every message that asks for an ack; `errorFor(i, b)` is the errno of element message i of batch b (0: fine). */
export function fakeKernel(opts: { errorFor?: (i: number, batch: number) => number; batchError?: number; chunk?: number; drop?: number; stale?: boolean } = {}) {
  const sent: Buffer[] = [];
  let queue: Buffer[] = [];
  const state = { closed: 0 };
  const sys: NetlinkSys = {
    open: () => 7,
    send(fd, buf) {
      expect(fd).toBe(7);
      sent.push(Buffer.from(buf));
      const batch = sent.length - 1;
      const msgs = parseMessages(buf);
      const answers: Buffer[] = [];
      if (opts.stale) answers.push(ack(12345, 0xa0c, -17));
      if (opts.batchError) answers.push(ack(msgs[0]!.seq, msgs[0]!.type, -opts.batchError));
      else
        msgs.slice(1, -1).forEach((m, i) => {
          if (m.flags & NLM_F_ACK) answers.push(ack(m.seq, m.type, -(opts.errorFor?.(i, batch) ?? 0)));
        });
      const all = answers.slice(0, answers.length - (opts.drop ?? 0));
      // the kernel queues one skb per answer (or several answers in one, when they fit)
      const n = opts.chunk ?? all.length;
      queue = [];
      for (let i = 0; i < all.length; i += n) queue.push(Buffer.concat(all.slice(i, i + n)));
      return buf.length;
    },
    recv(_fd, buf) {
      const next = queue.shift();
      if (!next) return -11;
      next.copy(buf);
      return next.length;
    },
    close: () => {
      state.closed++;
    },
    strerror: (e) => STRERROR[e] ?? `Unknown error ${e}`,
  };
  return { sys, sent, state };
}

