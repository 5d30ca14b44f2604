// Load (issue 4, item 8): 200 concurrent sessions, each doing 5 transfers alternating passive and active,
// against proftpd through the proxy and a default-deny nftables firewall. Every sha256 must be right, no
// firewall object may remain, and the daemon's RSS after a second round must be within 10% of the first.
// The figures are printed.
import { randomBytes, createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, Lab, type ProxyProcess, requireLab } from './lab.js';

const SESSIONS = 200;
const TRANSFERS = 5;
const FILES = 5;
const SIZE = 256 * 1024;

/** The daemon's own reading after a full GC (SIGUSR2; the proxy runs with --expose-gc). */
async function memory(proxy: ProxyProcess): Promise<{ rss: number; heap: number }> {
  const before = proxy.lines.length;
  process.kill(proxy.pid, 'SIGUSR2');
  for (let i = 0; i < 50; i++) {
    const line = proxy.lines.slice(before).find((l) => l.startsWith('status: '));
    const m = line && /rss ([\d.]+) MiB, heap ([\d.]+) MiB \(after gc\)/.exec(line);
    if (m) return { rss: Number(m[1]), heap: Number(m[2]) };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no status line:\n${proxy.log}`);
}

/** Idle readings until two agree within 1% (V8 and malloc give memory back some time after a GC). */
async function settledMemory(proxy: ProxyProcess): Promise<{ rss: number; heap: number }> {
  let last = await memory(proxy);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await memory(proxy);
    if (Math.abs(now.rss - last.rss) <= last.rss * 0.01) return now;
    last = now;
  }
  return last;
}

beforeAll(requireLab);

describe('load', () => {
  let lab: Lab;
  let proxy: ProxyProcess;
  const files: string[] = [];

  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
    for (let i = 1; i <= FILES; i++) {
      const data = randomBytes(SIZE);
      writeFileSync(`${lab.runDir}/data/load${i}.bin`, data, { mode: 0o644 });
      files.push(`load${i}.bin:${createHash('sha256').update(data).digest('hex')}`);
    }
    // The V8 flag the daemonized process and the systemd unit run with; --expose-gc for the readings.
    proxy = await lab.proxy(['-D', '5', '-m', '500', '--max-per-client', '500'], {}, ['--expose-gc', '--max-semi-space-size=1']);
  });
  afterAll(async () => {
    await lab?.down();
  });

  it(`${SESSIONS} concurrent sessions x ${TRANSFERS} transfers, twice: every sha256 right, no firewall object left, no leak`, async () => {
    const rounds: { ok: number; seconds: number; rss: number; heap: number }[] = [];
    const idle = await settledMemory(proxy);
    for (let round = 1; round <= 2; round++) {
      const r = await lab.raw(['load', lab.target, String(SESSIONS), String(TRANSFERS), ...files], 300_000);
      expect(r.failed, JSON.stringify(r)).toBe(0);
      expect(r.badSum).toBe(0);
      expect(r.ok).toBe(SESSIONS * TRANSFERS);
      expect(await lab.waitNoPinholes(10_000)).toBe(0);
      rounds.push({ ok: Number(r.ok), seconds: Number(r.seconds), ...(await settledMemory(proxy)) });
    }
    const [a, b] = rounds as [(typeof rounds)[0], (typeof rounds)[0]];
    const growth = (b.rss - a.rss) / a.rss;
    console.log(
      [
        `load: ${SESSIONS} sessions x ${TRANSFERS} transfers of ${SIZE / 1024} KiB, passive and active alternating`,
        `  idle:    daemon RSS ${idle.rss} MiB, heap ${idle.heap} MiB (after gc)`,
        `  round 1: ${a.ok} transfers ok in ${a.seconds.toFixed(1)} s (${(a.ok / a.seconds).toFixed(0)}/s), daemon RSS ${a.rss} MiB, heap ${a.heap} MiB`,
        `  round 2: ${b.ok} transfers ok in ${b.seconds.toFixed(1)} s (${(b.ok / b.seconds).toFixed(0)}/s), daemon RSS ${b.rss} MiB, heap ${b.heap} MiB`,
        `  RSS change round 1 -> 2: ${(growth * 100).toFixed(1)}% (limit 10%); firewall objects left: 0`,
      ].join('\n'),
    );
    expect(Math.abs(growth)).toBeLessThan(0.1);
    expect(b.heap).toBeLessThan(a.heap * 1.1 + 1); // what is kept after a GC does not grow
    expect(proxy.log).not.toMatch(/operation failed|rule removal failed|client limit/);
  }, 600_000);
});
