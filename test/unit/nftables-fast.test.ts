// The nftables backend with its netlink fast path (src/firewall/nfnl/): after a self-test at init, each
// negotiation's elements go to the (fake) kernel as one nfnetlink batch carrying exactly the ops of the
// script path; without the self-test passing everything stays with the runner; errors keep their paths.
import { describe, expect, it } from 'vitest';
import { passivePinhole, PinholeConflict, type RuleOptions, type SessionEnds } from '../../src/firewall/backend.js';
import { parseMessages } from '../../src/firewall/nfnl/netlink.js';
import { addOps, NftablesBackend, removeOps, tableScript } from '../../src/firewall/nftables.js';
import { encodeBatch } from '../../src/firewall/nfnl/setelem.js';
import { fixedInstance, ID } from '../helpers/instance.js';
import { fakeKernel } from '../helpers/nfnl-kernel.js';
import { ProbeRunner } from '../helpers/probe-runner.js';

const plain: RuleOptions = { log: 0, timeout: 30 };
const ends: SessionEnds = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
const owner = { instance: ID, session: 7 };

/** The port in the key of the first element of a batch: the self-test's probe (0.0.0.0 . 0.0.0.0 . port). */


function setup(o: { probeOk?: boolean; errorFor?: (i: number, batch: number) => number } = {}) {
  const k = fakeKernel({ errorFor: o.errorFor });
  const runner = new ProbeRunner(k.sent, o.probeOk ?? true);
  const warn: string[] = [];
  const info: string[] = [];
  const b = new NftablesBackend({ rules: plain, runner, instance: fixedInstance(), isAlive: async () => true, warn: (m) => warn.push(m), info: (m) => info.push(m), netlink: k.sys });
  return { k, runner, b, warn, info };
}

/** The batch as the backend must have sent it, but for its sequence numbers. */
const sameOps = (sent: Buffer, ops: Parameters<typeof encodeBatch>[0]) => {
  const strip = (b: Buffer) => parseMessages(b).map((m) => ({ type: m.type, flags: m.flags, payload: m.payload.toString('hex') }));
  expect(strip(sent)).toEqual(strip(encodeBatch(ops, { table: 'ftp-proxy', seq: 0, ack: true })));
};

describe('NftablesBackend with the netlink fast path', () => {
  it('sends each negotiation as one batch of the same ops the script path writes, and no script', async () => {
    const { k, runner, b, info } = setup();
    await b.init();
    expect(b.fastPath).toBe(true);
    expect(info.join('\n')).toMatch(/elements over netlink/);
    const scriptsAfterInit = runner.scripts.length;
    const first = [passivePinhole(ends, 50000, 61000)];
    const second = [passivePinhole(ends, 50001, 61001)];
    await b.replace(owner, first);
    await b.replace(owner, second);
    await b.clear(owner);
    expect(runner.scripts.length).toBe(scriptsAfterInit);
    const batches = k.sent.slice(2); // after the probe and its removal
    expect(batches).toHaveLength(3);
    sameOps(batches[0]!, addOps(first, `${ID}.7`, 'pinhole', 30));
    sameOps(batches[1]!, [...removeOps(first, 'pinhole'), ...addOps(second, `${ID}.7`, 'pinhole', 30)]);
    sameOps(batches[2]!, removeOps(second, 'pinhole'));
  });

  it('stays with the runner when the probe does not read back right, and says why', async () => {
    const { k, runner, b, warn } = setup({ probeOk: false });
    await b.init();
    expect(b.fastPath).toBe(false);
    expect(k.state.closed).toBe(1);
    expect(warn.join('\n')).toMatch(/netlink fast path off, it failed its self-test \(libnftables lists the probe element as timeout 10, value .*\); elements go through libnftables/);
    await b.replace(owner, [passivePinhole(ends, 50000, 61000)]);
    expect(k.sent).toHaveLength(2);
    expect(runner.scripts.at(-1)).toMatch(/^create element inet ftp-proxy once4/);
  });

  it('a taken key is a PinholeConflict', async () => {
    const { b } = setup({ errorFor: (i, batch) => (batch === 2 && i === 0 ? 17 : 0) });
    await b.init();
    await expect(b.replace(owner, [passivePinhole(ends, 50000, 61000)])).rejects.toBeInstanceOf(PinholeConflict);
  });

  it('a table gone (ENOENT) is repaired through the runner, and the additions retried over netlink', async () => {
    const { k, runner, b, warn } = setup({ errorFor: (_i, batch) => (batch === 3 ? 2 : 0) });
    await b.init();
    await b.replace(owner, [passivePinhole(ends, 50000, 61000)]);
    await b.replace(owner, [passivePinhole(ends, 50000, 61001)]);
    expect(warn.join('\n')).toMatch(/missing or damaged/);
    expect(runner.scripts.at(-1)).toContain(tableScript(plain, null));
    // the failed batch (removal and creation), then the creation alone
    sameOps(k.sent.at(-1)!, addOps([passivePinhole(ends, 50000, 61001)], `${ID}.7`, 'pinhole', 30));
  });

  it('other kernel errors go on to the CRIT path naming the errno', async () => {
    const { b } = setup({ errorFor: (_i, batch) => (batch === 2 ? 1 : 0) });
    await b.init();
    await expect(b.replace(owner, [passivePinhole(ends, 50000, 61000)])).rejects.toThrow(/Operation not permitted \(EPERM\)/);
  });

  it('closes its socket when the backend closes', async () => {
    const { k, b } = setup();
    await b.init();
    await b.close();
    expect(k.state.closed).toBe(1);
  });
});
