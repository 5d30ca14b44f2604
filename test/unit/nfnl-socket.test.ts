// The fast path's exchange with the kernel, against a fake kernel that reads our batch and answers
// each message as nfnetlink would: the errors it maps (EEXIST -> PinholeConflict, the rest naming the
// errno), which element it blames, and what it does with answers that are not its own.
import { describe, expect, it } from 'vitest';
import { PinholeConflict } from '../../src/firewall/backend.js';
import { parseMessages } from '../../src/firewall/nfnl/netlink.js';
import { type ElementOp } from '../../src/firewall/nfnl/setelem.js';
import { FAST_MAX_OPS, isNfnlEnoent, NfnlError, NfnlSocket } from '../../src/firewall/nfnl/socket.js';
import { fakeKernel } from '../helpers/nfnl-kernel.js';

const ops: ElementOp[] = [
  { op: 'add', set: 'once4', key: '10.0.0.1 . 10.0.0.2 . 50000', timeoutMs: 1000 },
  { op: 'delete', set: 'once4', key: '10.0.0.1 . 10.0.0.2 . 50000' },
  { op: 'create', set: 'once4', key: '10.0.0.1 . 10.0.0.2 . 50001', timeoutMs: 30000, comment: 'a.1' },
  { op: 'create', set: 'dnat4', key: '10.0.0.1 . 10.0.0.2 . 50001', value: '10.0.0.2 . 2121', timeoutMs: 30000, comment: 'a.1' },
];
const T = { table: 'inet ftp-proxy' };

describe('NfnlSocket', () => {
  it('sends one batch per call, every element asking for an ack, and returns when all are acked', () => {
    const k = fakeKernel();
    const s = new NfnlSocket(k.sys, T);
    s.apply(ops);
    s.apply(ops.slice(2));
    expect(k.sent).toHaveLength(2);
    const [first, second] = k.sent.map(parseMessages);
    expect(first!.map((m) => m.type)).toEqual([16, 0xa0c, 0xa0e, 0xa0c, 0xa0c, 17]);
    // the next batch's sequence numbers follow on
    expect(second![0]!.seq).toBe(first!.at(-1)!.seq + 1);
  });

  it('sends nothing for no ops', () => {
    const k = fakeKernel();
    new NfnlSocket(k.sys, T).apply([]);
    expect(k.sent).toHaveLength(0);
  });

  it('reads answers that come in several reads', () => {
    const k = fakeKernel({ chunk: 1 });
    expect(() => new NfnlSocket(k.sys, T).apply(ops)).not.toThrow();
  });

  it('a taken key on create is a PinholeConflict naming the element and the errno', () => {
    const k = fakeKernel({ errorFor: (i) => (i === 3 ? 17 : 0) });
    const e = (() => {
      try {
        new NfnlSocket(k.sys, T).apply(ops);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(PinholeConflict);
    expect((e as Error).message).toBe(
      'Could not process rule: File exists (EEXIST) (create element inet ftp-proxy dnat4 { 10.0.0.1 . 10.0.0.2 . 50001 timeout 30s comment "a.1" : 10.0.0.2 . 2121 })',
    );
  });

  it('blames the first failing element; ENOENT (a table or set gone) is recognisable', () => {
    const k = fakeKernel({ errorFor: (i) => (i >= 1 ? 2 : 0) });
    let e: unknown;
    try {
      new NfnlSocket(k.sys, T).apply(ops);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(NfnlError);
    expect(isNfnlEnoent(e)).toBe(true);
    expect((e as NfnlError).errno).toBe(2);
    expect((e as Error).message).toMatch(/^Could not process rule: No such file or directory \(ENOENT\) \(delete element inet ftp-proxy once4 /);
    expect((e as NfnlError).command).toContain('create element inet ftp-proxy dnat4');
  });

  it('EEXIST on a plain add (not create) is no conflict but an error', () => {
    const k = fakeKernel({ errorFor: (i) => (i === 0 ? 17 : 0) });
    expect(() => new NfnlSocket(k.sys, T).apply(ops)).toThrow(NfnlError);
  });

  it('a refused batch (the answer to BATCH_BEGIN) names the errno', () => {
    const k = fakeKernel({ batchError: 1 });
    expect(() => new NfnlSocket(k.sys, T).apply(ops)).toThrow('Could not process rule: Operation not permitted (EPERM) (batch)');
  });

  it('answers that are missing are an error, not a wait', () => {
    const k = fakeKernel({ drop: 1 });
    expect(() => new NfnlSocket(k.sys, T).apply(ops)).toThrow('nfnetlink: the kernel answered 3 of 4 messages');
  });

  it("ignores an answer to some earlier batch's message", () => {
    const k = fakeKernel({ stale: true });
    expect(() => new NfnlSocket(k.sys, T).apply(ops)).not.toThrow();
  });

  it('a socket that cannot be opened says why', () => {
    const k = fakeKernel();
    k.sys.open = () => -1;
    expect(() => new NfnlSocket(k.sys, T)).toThrow('nfnetlink: cannot open a netlink socket: Operation not permitted (EPERM)');
  });
});

describe('NfnlSocket limits', () => {
  it(`refuses a batch of more than FAST_MAX_OPS changes before sending anything`, () => {
    const k = fakeKernel();
    const many = Array.from({ length: FAST_MAX_OPS + 1 }, (_, i) => ({ ...ops[2]!, key: `10.0.0.1 . 10.0.0.2 . ${(i % 60000) + 1}` }));
    expect(() => new NfnlSocket(k.sys, T).apply(many)).toThrow(/more than 1000/);
    expect(k.sent).toHaveLength(0);
    expect(() => new NfnlSocket(k.sys, T).apply(many.slice(0, FAST_MAX_OPS))).not.toThrow();
  });
});
