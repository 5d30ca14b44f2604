// Session removals batched across sessions (issue 13, full cycles): the clear()s asked for within one
// event-loop turn go to the kernel as one transaction (one nfnetlink batch, or one script without the
// fast path); a combined batch that fails is retried session by session, so every session's elements
// go and only the bad session's clear() rejects (its caller logs it, once); more ops than one netlink
// batch carries are split at session boundaries; close() waits for removals already asked for.
import { describe, expect, it } from 'vitest';
import { passivePinhole, type RuleOptions, type SessionEnds } from '../../src/firewall/backend.js';
import { parseAttrs, parseMessages } from '../../src/firewall/nfnl/netlink.js';
import { encodeBatch } from '../../src/firewall/nfnl/setelem.js';
import { FAST_MAX_OPS } from '../../src/firewall/nfnl/socket.js';
import { NftablesBackend, removalGroups, removeOps, removeScript } from '../../src/firewall/nftables.js';
import { fixedInstance, ID } from '../helpers/instance.js';
import { fakeKernel } from '../helpers/nfnl-kernel.js';
import { ProbeRunner } from '../helpers/probe-runner.js';

const plain: RuleOptions = { log: 0, timeout: 30 };
const EBUSY = 16;

/** Session n's ends: each session its own client address (192.168.x.y), so its elements can be told apart. */
const ends = (n: number): SessionEnds => ({
  family: 4,
  client: `192.168.${Math.floor(n / 250)}.${(n % 250) + 1}`,
  originalServer: '198.51.100.21',
  server: '198.51.100.21',
  proxy: '198.51.100.1',
});
const owner = (n: number) => ({ instance: ID, session: n });
const pin = (n: number) => [passivePinhole(ends(n), 50000, 61000 + (n % 1000))];

/** The first key component (the client's address) of element message i of a batch. */
function clientOf(batch: Buffer, i: number): string {
  const m = parseMessages(batch)[i + 1]!;
  const list = parseAttrs(m.payload.subarray(4)).find((a) => a.type === 3)!;
  const elem = parseAttrs(list.payload)[0]!;
  const key = parseAttrs(elem.payload).find((a) => a.type === 1)!;
  return [...parseAttrs(key.payload)[0]!.payload.subarray(0, 4)].join('.');
}

/** How many element messages a batch carries (all but BATCH_BEGIN and BATCH_END). */
const elementCount = (batch: Buffer): number => parseMessages(batch).length - 2;

/** The batch as the backend must have sent it, but for its sequence numbers. */
const sameOps = (sent: Buffer, ops: Parameters<typeof encodeBatch>[0]) => {
  const strip = (b: Buffer) => parseMessages(b).map((m) => ({ type: m.type, flags: m.flags, payload: m.payload.toString('hex') }));
  expect(strip(sent)).toEqual(strip(encodeBatch(ops, { table: 'ftp-proxy', seq: 0, ack: true })));
};


/** A backend on the fast path; `errorFor(batch, i)` is the errno for element message i of batch `batch`. */
async function fast(errorFor?: (batch: Buffer, i: number) => number) {
  const k = fakeKernel({ errorFor: errorFor && ((i, b) => errorFor(k.sent[b]!, i)) });
  const runner = new ProbeRunner(k.sent);
  const warn: string[] = [];
  const b = new NftablesBackend({ rules: plain, runner, instance: fixedInstance(), isAlive: async () => true, warn: (m) => warn.push(m), netlink: k.sys });
  await b.init();
  expect(b.fastPath).toBe(true);
  return { k, runner, b, warn };
}

/** Sessions 1..n each with one pinhole in the kernel; the batches sent from here on. */
async function withSessions(b: NftablesBackend, sent: Buffer[], n: number): Promise<() => Buffer[]> {
  for (let s = 1; s <= n; s++) await b.replace(owner(s), pin(s));
  const from = sent.length;
  return () => sent.slice(from);
}

describe('removalGroups', () => {
  const r = (n: number) => ({ ops: Array.from({ length: n }, () => 0) });
  it.each([
    { name: 'all in one', sizes: [6, 6, 6], max: 18, want: [[6, 6, 6]] },
    { name: 'split at session boundaries', sizes: [6, 6, 6], max: 17, want: [[6, 6], [6]] },
    { name: 'a session larger than max alone', sizes: [2, 30, 2], max: 10, want: [[2], [30], [2]] },
    { name: 'exactly max, then the rest', sizes: [5, 5, 1], max: 10, want: [[5, 5], [1]] },
    { name: 'nothing', sizes: [], max: 10, want: [] },
  ])('$name', ({ sizes, max, want }) => {
    expect(removalGroups(sizes.map(r), max).map((g) => g.map((x) => x.ops.length))).toEqual(want);
  });
});

describe('NftablesBackend: removals of sessions ending in one turn', () => {
  it('go to the kernel as one netlink batch, the sessions in order', async () => {
    const { k, runner, b } = await fast();
    const since = await withSessions(b, k.sent, 3);
    const scripts = runner.scripts.length;
    await Promise.all([b.clear(owner(1)), b.clear(owner(2)), b.clear(owner(3))]);
    expect(since()).toHaveLength(1);
    sameOps(since()[0]!, [...removeOps(pin(1), 'pinhole'), ...removeOps(pin(2), 'pinhole'), ...removeOps(pin(3), 'pinhole')]);
    expect(runner.scripts.length).toBe(scripts);
  });

  it('a removal asked for in a later turn goes in a batch of its own', async () => {
    const { k, b } = await fast();
    const since = await withSessions(b, k.sent, 2);
    await b.clear(owner(1));
    await b.clear(owner(2));
    expect(since()).toHaveLength(2);
    sameOps(since()[1]!, removeOps(pin(2), 'pinhole'));
  });

  it('without the fast path: one script through the runner', async () => {
    const runner = new ProbeRunner([]);
    const b = new NftablesBackend({ rules: plain, runner, instance: fixedInstance(), isAlive: async () => true });
    for (let s = 1; s <= 3; s++) await b.replace(owner(s), pin(s));
    const from = runner.scripts.length;
    await Promise.all([b.clear(owner(1)), b.clear(owner(2)), b.clear(owner(3))]);
    expect(runner.scripts.slice(from)).toEqual([[...removeScript(pin(1), 'pinhole'), ...removeScript(pin(2), 'pinhole'), ...removeScript(pin(3), 'pinhole')].join('\n') + '\n']);
  });

  it('a failing combined batch: each session again alone; the others resolve, only the bad one rejects, once', async () => {
    const bad = ends(2).client;
    // The kernel refuses session 2's elements wherever they come (an EBUSY: the key holds other data).
    let armed = false;
    const { k, b, warn } = await fast((batch, i) => (armed && clientOf(batch, i) === bad ? EBUSY : 0));
    const since = await withSessions(b, k.sent, 3);
    armed = true;
    const results = await Promise.allSettled([b.clear(owner(1)), b.clear(owner(2)), b.clear(owner(3))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const why = (results[1] as PromiseRejectedResult).reason as Error;
    // its own element named: the caller (the session) logs it with the session's context
    expect(why.message).toMatch(/EBUSY/);
    expect(why.message).toContain(bad);
    expect(warn).toEqual([]); // nothing logged by the backend itself: the one report is the caller's
    // the combined batch, then 1, 2, 3 alone
    const sent = since();
    expect(sent).toHaveLength(4);
    sameOps(sent[1]!, removeOps(pin(1), 'pinhole'));
    sameOps(sent[2]!, removeOps(pin(2), 'pinhole'));
    sameOps(sent[3]!, removeOps(pin(3), 'pinhole'));
  });

  it('a combined batch failing as a whole (ENOENT): every session retried alone, all resolve', async () => {
    let failed = false;
    const { k, b } = await fast((batch, i) => {
      // the first multi-session batch fails at its first element, as when an element is gone
      if (!failed && elementCount(batch) > 6 && i === 0) {
        failed = true;
        return 2;
      }
      return 0;
    });
    const since = await withSessions(b, k.sent, 3);
    await expect(Promise.all([b.clear(owner(1)), b.clear(owner(2)), b.clear(owner(3))])).resolves.toBeDefined();
    expect(failed).toBe(true);
    const sent = since();
    // combined (failed), then each session alone (ENOENT on one alone repairs the table: none here)
    expect(sent.slice(1).map((x) => clientOf(x, 0))).toEqual([ends(1).client, ends(2).client, ends(3).client]);
  });

  it(`more than FAST_MAX_OPS (${FAST_MAX_OPS}) ops: several netlink batches, none larger, a session never split`, async () => {
    const per = removeOps(pin(1), 'pinhole').length;
    const n = Math.ceil((FAST_MAX_OPS * 1.5) / per);
    const { k, runner, b } = await fast();
    const since = await withSessions(b, k.sent, n);
    const scripts = runner.scripts.length;
    await Promise.all(Array.from({ length: n }, (_, i) => b.clear(owner(i + 1))));
    const sent = since();
    expect(sent).toHaveLength(2);
    expect(sent.map(elementCount)).toEqual([Math.floor(FAST_MAX_OPS / per) * per, (n - Math.floor(FAST_MAX_OPS / per)) * per]);
    for (const x of sent) expect(elementCount(x) % per).toBe(0);
    expect(runner.scripts.length).toBe(scripts); // not handed to libnftables for being large
  });

  it('close() sends removals already asked for before it closes the socket', async () => {
    const { k, b } = await fast();
    const since = await withSessions(b, k.sent, 2);
    const cleared = Promise.all([b.clear(owner(1)), b.clear(owner(2))]);
    await b.close();
    await cleared;
    expect(since()).toHaveLength(1);
    sameOps(since()[0]!, [...removeOps(pin(1), 'pinhole'), ...removeOps(pin(2), 'pinhole')]);
    expect(k.state.closed).toBe(1);
  });

  it('a session cleared twice, or never given pinholes, sends nothing', async () => {
    const { k, b } = await fast();
    const since = await withSessions(b, k.sent, 1);
    await Promise.all([b.clear(owner(1)), b.clear(owner(1)), b.clear(owner(9))]);
    expect(since()).toHaveLength(1);
    sameOps(since()[0]!, removeOps(pin(1), 'pinhole'));
  });
});
