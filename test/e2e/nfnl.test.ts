// The nftables fast path against a real kernel: the elements it writes over netlink are the very ones
// libnftables writes for the same script (as `nft -j list table` shows them), a transaction is all or
// nothing, and through the daemon a pinhole written this way still admits one connection only.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activePinhole, localPinhole, passivePinhole, type Pinhole, type SessionEnds } from '../../src/firewall/backend.js';
import { addOps, removeOps, tableScript, variantChain } from '../../src/firewall/nftables.js';
import { type ElementOp, opsToScript } from '../../src/firewall/nfnl/setelem.js';
import { EXAMPLES, Lab, type ProxyProcess, requireLab, ROOT } from './lab.js';

const NS = `ftpe${process.pid}xnfnl`;
const T = 'inet ftp-proxy';
const nft = (args: string[], input?: string) =>
  execa('ip', ['netns', 'exec', NS, ...(input === undefined ? ['nft', ...args] : ['bash', '-c', 'nft -f <(cat)'])], { reject: false, ...(input === undefined ? {} : { input }) });

/** Through the fast path, in the scratch namespace (test/helpers/nfnl-apply.mjs on dist/). */
async function fast(ops: ElementOp[]): Promise<{ ok?: boolean; error?: string; message?: string }> {
  const r = await execa('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}test/helpers/nfnl-apply.mjs`], { input: JSON.stringify(ops), reject: false });
  return JSON.parse(r.stdout.trim().split('\n').at(-1) || `{"error":"crashed","message":${JSON.stringify(r.stderr)}}`) as { ok?: boolean; error?: string };
}

interface Elem {
  set: string;
  key: unknown;
  value?: unknown;
  timeout?: number;
  comment?: string;
}

/** Every element of the table, as libnftables reads it back (the countdown `expires` left out). */
async function elements(): Promise<Elem[]> {
  const r = await nft(['-j', 'list', 'table', 'inet', 'ftp-proxy']);
  expect(r.exitCode, r.stderr).toBe(0);
  const out: Elem[] = [];
  for (const item of (JSON.parse(r.stdout) as { nftables: Record<string, { name: string; elem?: unknown[] }>[] }).nftables) {
    const obj = item.set ?? item.map;
    if (!obj?.elem || obj.name === 'instances') continue;
    for (const raw of obj.elem) {
      const [k, v] = Array.isArray(raw) ? raw : [raw, undefined];
      const e = (k as { elem: { val: unknown; timeout?: number; comment?: string } }).elem;
      out.push({ set: obj.name, key: e.val, ...(v === undefined ? {} : { value: v }), timeout: e.timeout, comment: e.comment });
    }
  }
  return out.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

async function freshTable(): Promise<void> {
  await nft(['flush', 'ruleset']);
  const r = await nft([], tableScript({ log: 1, timeout: 30 }, null));
  expect(r.exitCode, r.stderr).toBe(0);
}

const v4: SessionEnds = { family: 4, client: '192.0.2.10', originalServer: '198.51.100.20', server: '198.51.100.20', proxy: '203.0.113.1' };
const v6: SessionEnds = { family: 6, client: '2001:db8::10', originalServer: '2001:db8:ffff::20', server: '2001:db8:ffff::20', proxy: '2001:db8::1' };
const pins: Pinhole[] = [
  passivePinhole(v4, 40000, 50001),
  activePinhole(v4, 40001, 50002, false),
  activePinhole(v4, 40002, 50003, true),
  passivePinhole(v6, 40000, 50004),
  localPinhole('client', 4, '192.0.2.10', '198.51.100.20', 50005, '192.0.2.1', 33333),
];
const flagged = variantChain({ log: 1, timeout: 30 });

describe('the fast path against a real kernel', () => {
  beforeAll(async () => {
    await requireLab();
    await execa('ip', ['netns', 'add', NS]);
  });
  afterAll(async () => {
    await execa('ip', ['netns', 'del', NS], { reject: false });
  });

  it.each([
    ['plain instance', 'pinhole'],
    ['instance with -v (verdict map)', flagged],
  ])('writes the elements libnftables writes for the same script: %s', async (_, chain) => {
    const ops = addOps(pins, 'c0ffee.7', chain, 30);
    await freshTable();
    expect(await fast(ops)).toEqual({ ok: true });
    const ours = await elements();
    expect(ours.length).toBe(ops.length);
    await freshTable();
    const r = await nft([], opsToScript(ops, T).join('\n') + '\n');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(ours).toEqual(await elements());
  });

  it('a transaction is all or nothing: a taken key is a PinholeConflict and nothing of the batch stays', async () => {
    await freshTable();
    const first = addOps([pins[0]!], 'c0ffee.1', 'pinhole', 30);
    expect(await fast(first)).toEqual({ ok: true });
    const before = await elements();
    const again = [...addOps([pins[1]!], 'c0ffee.2', 'pinhole', 30), ...first];
    const r = await fast(again);
    expect(r.error).toBe('PinholeConflict');
    expect(r.message).toMatch(/File exists \(EEXIST\)/);
    expect(await elements()).toEqual(before);
  });

  it('the removal (add, then delete) empties the sets, also for an element already gone', async () => {
    await freshTable();
    expect(await fast(addOps(pins, 'c0ffee.3', 'pinhole', 30))).toEqual({ ok: true });
    // one element gone already, as a data connection consumes its once element
    expect((await nft(['delete', 'element', 'inet', 'ftp-proxy', 'once4', '{ 192.0.2.10 . 198.51.100.20 . 50001 }'])).exitCode).toBe(0);
    expect(await fast(removeOps(pins, 'pinhole'))).toEqual({ ok: true });
    expect(await elements()).toEqual([]);
  });

  it('a missing table is ENOENT, named', async () => {
    await nft(['flush', 'ruleset']);
    const r = await fast(addOps([pins[0]!], 'c0ffee.4', 'pinhole', 30));
    expect(r.error).toBe('NfnlError');
    expect(r.message).toMatch(/No such file or directory \(ENOENT\)/);
  });
});

describe('through the daemon', () => {
  let lab: Lab;
  let proxy: ProxyProcess | null = null;
  beforeAll(async () => {
    await requireLab();
    lab = await Lab.up('forward');
    await lab.loadRuleset(lab.closedLan(`${EXAMPLES}forward-redirect.nft`)); // a second connection must time out
  });
  afterAll(async () => {
    await proxy?.stop();
    await lab?.down();
  });

  it('uses the fast path, and its pinhole admits one connection only', async () => {
    proxy = await lab.proxy(['-D', '6']);
    expect(proxy.lines.join('\n')).toMatch(/elements over netlink/);
    const r = await lab.raw(['pasv-twice', lab.target]);
    expect(r.first, JSON.stringify(r)).toBe('connected');
    expect(r.second, JSON.stringify(r)).toBe('timeout');
  });
});
