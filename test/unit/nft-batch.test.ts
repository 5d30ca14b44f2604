// The libnftables runner's queue: one call at a time, scripts that wait meanwhile go in one transaction,
// and a failed batch is retried script by script so that each caller gets its own answer.
import { describe, expect, it } from 'vitest';
import { ScriptBatcher } from '../../src/firewall/nft-runner.js';

function fakeKernel(fails: (script: string) => boolean = () => false) {
  const calls: string[] = [];
  let release: (() => void) | null = null;
  const gate = { hold: false };
  const call = async (script: string): Promise<string> => {
    calls.push(script);
    if (gate.hold) await new Promise<void>((r) => (release = r));
    if (fails(script)) throw new Error(`Could not process rule: File exists (${script.trim()})`);
    return `ok ${calls.length}`;
  };
  return { calls, call, gate, release: () => release?.() };
}

describe('ScriptBatcher', () => {
  it('runs a lone script as it is', async () => {
    const k = fakeKernel();
    const b = new ScriptBatcher(k.call);
    await expect(b.run('add element a')).resolves.toBe('ok 1');
    expect(k.calls).toEqual(['add element a\n']);
  });

  it('puts the scripts that wait for a call in flight into one call, in order', async () => {
    const k = fakeKernel();
    const b = new ScriptBatcher(k.call);
    k.gate.hold = true;
    const first = b.run('one\n');
    await new Promise((r) => setTimeout(r, 0));
    const rest = [b.run('two\n'), b.run('three\n'), b.run('four')];
    k.gate.hold = false;
    k.release();
    await first;
    await Promise.all(rest);
    expect(k.calls).toEqual(['one\n', 'two\nthree\nfour\n']);
  });

  it('retries a failed batch script by script: only the failing caller gets the error', async () => {
    const k = fakeKernel((s) => s.includes('bad'));
    const b = new ScriptBatcher(k.call);
    k.gate.hold = true;
    const first = b.run('one\n');
    await new Promise((r) => setTimeout(r, 0));
    const good = b.run('good\n');
    const bad = b.run('bad\n');
    const good2 = b.run('good2\n');
    k.gate.hold = false;
    k.release();
    await first;
    await expect(good).resolves.toMatch(/^ok/);
    await expect(bad).rejects.toThrow(/File exists/);
    await expect(good2).resolves.toMatch(/^ok/);
    expect(k.calls).toEqual(['one\n', 'good\nbad\ngood2\n', 'good\n', 'bad\n', 'good2\n']);
  });

  it('keeps other calls (listings) in their place in the queue', async () => {
    const k = fakeKernel();
    const b = new ScriptBatcher(k.call);
    const order: string[] = [];
    const a = b.run('a').then(() => order.push('a'));
    const l = b.serialize(async () => {
      order.push('list');
    });
    const c = b.run('c').then(() => order.push('c'));
    await Promise.all([a, l, c]);
    expect(order).toEqual(['a', 'list', 'c']);
  });
});
