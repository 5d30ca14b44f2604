// The fast path's start-up self-test: a probe element written over netlink must come back from
// libnftables' listing exactly as written, or the backend stays with libnftables.
import { describe, expect, it } from 'vitest';
import { startFastPath } from '../../src/firewall/nfnl/fast-path.js';
import { parseMessages } from '../../src/firewall/nfnl/netlink.js';
import { fakeKernel } from '../helpers/nfnl-kernel.js';

/** libnftables' JSON for map dnat4 holding one element. */
const listing = (port: number, o: { comment?: string; timeout?: number; value?: unknown } = {}) => ({
  nftables: [
    { metainfo: { version: '1.0.6' } },
    {
      map: {
        family: 'inet',
        name: 'dnat4',
        table: 'ftp-proxy',
        elem: [[{ elem: { val: { concat: ['0.0.0.0', '0.0.0.0', port] }, timeout: o.timeout ?? 10, expires: 9, comment: o.comment ?? 'ftp-proxy self-test' } }, o.value ?? { concat: ['0.0.0.0', port] }]],
      },
    },
  ],
});

const deps = (k: ReturnType<typeof fakeKernel>, list: (port: number) => unknown) => ({
  sys: k.sys,
  table: 'inet ftp-proxy',
  map: 'dnat4',
  random: () => 0.5,
  listMap: async () => list(1 + Math.floor(0.5 * 49151)),
});

describe('startFastPath', () => {
  it('passes when libnftables lists the probe as written, and removes the probe', async () => {
    const k = fakeKernel();
    const r = await startFastPath(deps(k, (p) => listing(p)));
    expect('socket' in r).toBe(true);
    expect(k.sent).toHaveLength(2);
    // the probe (a create), then its removal (add, delete)
    expect(k.sent.map((b) => parseMessages(b).slice(1, -1).map((m) => m.type))).toEqual([[0xa0c], [0xa0c, 0xa0e]]);
    expect(k.state.closed).toBe(0);
  });

  it.each([
    ['missing', (_p: number) => ({ nftables: [{ map: { name: 'dnat4', elem: [] } }] }), /not in libnftables' listing of dnat4/],
    ['another comment', (p: number) => listing(p, { comment: 'x' }), /not in libnftables' listing/],
    ['another timeout', (p: number) => listing(p, { timeout: 30 }), /timeout 30/],
    ['another value', (p: number) => listing(p, { value: { concat: ['0.0.0.1', p] } }), /value/],
  ])('fails when the listing shows the probe %s, and closes the socket', async (_, list, why) => {
    const k = fakeKernel();
    const r = await startFastPath(deps(k, list));
    expect(r).toEqual({ error: expect.stringMatching(why) });
    expect(k.state.closed).toBe(1);
  });

  it('fails with the kernel error of the probe', async () => {
    const k = fakeKernel({ batchError: 1 });
    expect(await startFastPath(deps(k, (p) => listing(p)))).toEqual({ error: 'Could not process rule: Operation not permitted (EPERM) (batch)' });
    expect(k.state.closed).toBe(1);
  });

  it('removes the probe even when the listing fails', async () => {
    const k = fakeKernel();
    const r = await startFastPath({ ...deps(k, () => null), listMap: async () => Promise.reject(new Error('libnftables: boom')) });
    expect(r).toEqual({ error: 'libnftables: boom' });
    expect(k.sent).toHaveLength(2);
  });

  it('fails when no socket opens', async () => {
    const k = fakeKernel();
    k.sys.open = () => -93;
    expect(await startFastPath(deps(k, (p) => listing(p)))).toEqual({ error: expect.stringMatching(/cannot open a netlink socket/) });
  });
});
