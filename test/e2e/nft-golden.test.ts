// The golden nftables scripts of the unit tests, applied to a real kernel by the real nft in a scratch
// namespace: they must load, in one transaction each, and a second load of the table must be a no-op.
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { passivePinhole, type SessionEnds } from '../../src/firewall/backend.js';
import { addScript, tableScript } from '../../src/firewall/nftables.js';
import { requireLab } from './lab.js';

const NS = `ftpe${process.pid}xgolden`;
const golden = (name: string): string => readFileSync(new URL(`../golden/nftables/${name}`, import.meta.url), 'utf8');
// nft cannot open /dev/stdin on Node's socketpair pipes; go through bash's here-string (a real file).
const load = (script: string) => execa('ip', ['netns', 'exec', NS, 'bash', '-c', 'nft -f <(cat)'], { input: script, reject: false });

beforeAll(async () => {
  await requireLab();
  await execa('ip', ['netns', 'add', NS]);
});
afterAll(async () => {
  await execa('ip', ['netns', 'del', NS], { reject: false });
});

describe('golden nftables scripts load into a real kernel', () => {
  it.each(['table-plain.nft', 'table-v-tag.nft'])('%s loads, and loads again unchanged', async (name) => {
    await execa('ip', ['netns', 'exec', NS, 'nft', 'flush', 'ruleset']);
    const first = await load(golden(name));
    expect(first.exitCode, first.stderr).toBe(0);
    const before = (await execa('ip', ['netns', 'exec', NS, 'nft', 'list', 'ruleset'])).stdout;
    const again = await load(golden(name));
    expect(again.exitCode, again.stderr).toBe(0);
    expect((await execa('ip', ['netns', 'exec', NS, 'nft', 'list', 'ruleset'])).stdout).toBe(before);
  });

  it('table-vv-queue.nft loads; the second load the backend makes (rule present) changes nothing', async () => {
    await execa('ip', ['netns', 'exec', NS, 'nft', 'flush', 'ruleset']);
    const first = await load(golden('table-vv-queue.nft'));
    expect(first.exitCode, first.stderr).toBe(0);
    const before = (await execa('ip', ['netns', 'exec', NS, 'nft', 'list', 'chain', 'inet', 'ftp-proxy', 'perpacket'])).stdout;
    expect(before.match(/ct label 126/g)).toHaveLength(1);
    const again = await load(tableScript({ log: 2, queue: '1:10', timeout: 30 }, { label: 126, present: true }));
    expect(again.exitCode, again.stderr).toBe(0);
    expect((await execa('ip', ['netns', 'exec', NS, 'nft', 'list', 'chain', 'inet', 'ftp-proxy', 'perpacket'])).stdout).toBe(before);
  });

  it('elements.nft (create, then the add+delete removal) applies as one transaction and leaves nothing', async () => {
    await execa('ip', ['netns', 'exec', NS, 'nft', 'flush', 'ruleset']);
    expect((await load(golden('table-plain.nft'))).exitCode).toBe(0);
    const r = await load(golden('elements.nft'));
    expect(r.exitCode, r.stderr).toBe(0);
    const list = (await execa('ip', ['netns', 'exec', NS, 'nft', 'list', 'table', 'inet', 'ftp-proxy'])).stdout;
    expect(list).not.toMatch(/elements/);
    // and the creations alone do create every element
    const creates = golden('elements.nft').split('\n').filter((l) => l.startsWith('create')).join('\n') + '\n';
    expect((await load(creates)).exitCode).toBe(0);
    const full = (await execa('ip', ['netns', 'exec', NS, 'nft', '-j', 'list', 'table', 'inet', 'ftp-proxy'])).stdout;
    expect((full.match(/"comment": "4a3b2c1d\.7"/g) ?? []).length).toBe(creates.trim().split('\n').length);
  });

  it('two pinholes of one client to the same server port (two sessions, one passive port) coexist', async () => {
    await execa('ip', ['netns', 'exec', NS, 'nft', 'flush', 'ruleset']);
    expect((await load(golden('table-plain.nft'))).exitCode).toBe(0);
    const ends: SessionEnds = { family: 4, client: '192.0.2.10', originalServer: '198.51.100.20', server: '198.51.100.20', proxy: '203.0.113.1' };
    // separate transactions, as two sessions make them: the second must not be EEXIST
    for (const [pp, owner] of [[50001, '4242.1'], [50002, '4242.2']] as const) {
      const r = await load(addScript([passivePinhole(ends, 40000, pp)], owner, 'pinhole', 30).join('\n') + '\n');
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const list = (await execa('ip', ['netns', 'exec', NS, 'nft', 'list', 'map', 'inet', 'ftp-proxy', 'from4'])).stdout;
    expect(list).toContain('192.0.2.10 . 198.51.100.20 . 40000 . 198.51.100.20 . 50001');
    expect(list).toContain('192.0.2.10 . 198.51.100.20 . 40000 . 198.51.100.20 . 50002');
  });

  it('a broken script is refused by nft (the check can fail)', async () => {
    const r = await load('add element inet nosuch set1 { 1 }\n');
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/No such file or directory/);
  });
});
