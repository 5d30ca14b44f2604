// Session removals batched across sessions, against a real kernel (issue 13, full cycles): sessions
// cleared in one event-loop turn leave the table in one netlink transaction, and when the kernel refuses
// one session's removal, the combined transaction is retried session by session: every other session's
// elements still go, and only the bad session's clear() fails, naming the kernel's reason.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireLab, ROOT } from './lab.js';

const NS = `ftpe${process.pid}xnbc`;

interface Outcome {
  fast?: boolean;
  clearSends?: number;
  results?: string[];
  left?: { object: string; session: number }[];
  warnings?: string[];
  error?: string;
}

async function run(sessions: number, bad: number): Promise<Outcome> {
  const r = await execa('ip', ['netns', 'exec', NS, process.execPath, `${ROOT}test/helpers/nft-batch-clear.mjs`], { input: JSON.stringify({ sessions, bad }), reject: false });
  const line = r.stdout.trim().split('\n').at(-1);
  expect(line, r.stderr).toBeTruthy();
  return JSON.parse(line!) as Outcome;
}

async function tableGone(): Promise<void> {
  // the backend's close() removes the table when it was the last instance: nothing may remain
  const r = await execa('ip', ['netns', 'exec', NS, 'nft', 'list', 'ruleset'], { reject: false });
  expect(r.exitCode, r.stderr).toBe(0);
  expect(r.stdout).not.toMatch(/ftp-proxy/);
}

describe('nftables: removals of sessions ending in one turn, real kernel', () => {
  beforeAll(async () => {
    await requireLab();
    await execa('ip', ['netns', 'add', NS]);
  });
  afterAll(async () => {
    await execa('ip', ['netns', 'del', NS], { reject: false });
  });

  it('ten sessions cleared in one turn: one netlink transaction, nothing left', async () => {
    const o = await run(10, 0);
    expect(o.error).toBeUndefined();
    expect(o.fast).toBe(true);
    expect(o.clearSends).toBe(1);
    expect(o.results).toEqual(Array(10).fill('ok'));
    expect(o.left).toEqual([]);
    await tableGone();
  });

  it('one session the kernel refuses: the others are removed one by one, only its clear fails', async () => {
    const o = await run(5, 3);
    expect(o.error).toBeUndefined();
    expect(o.fast).toBe(true);
    // the combined transaction, then each of the five alone
    expect(o.clearSends).toBe(6);
    expect(o.results!.filter((r) => r !== 'ok')).toHaveLength(1);
    expect(o.results![2]).toMatch(/File exists \(EEXIST\).*dnat4 \{ 192\.0\.2\.3 /);
    // an atomic removal that failed leaves that session's elements (only its), nothing of any other
    expect(o.left!.length).toBeGreaterThan(0);
    expect(new Set(o.left!.map((e) => e.session))).toEqual(new Set([3]));
    expect(o.warnings).toEqual([]);
    await tableGone();
  });
});
