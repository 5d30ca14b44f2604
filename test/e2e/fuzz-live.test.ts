// Hostile input through a live proxy (issue 4, item 5; the 100,000-line run against the state machine is
// test/unit/fuzz.test.ts): random and mutated lines, split and pipelined, overlong, NUL, telnet IAC, over
// many sessions against proftpd. Every PORT and EPRT the fuzzer sends is invalid by construction, so the
// firewall may never get an active-mode pinhole from it. The daemon must live on, its memory bounded,
// nothing left in the firewall afterwards, and a normal transfer must still work.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, Lab, type ProxyProcess, requireLab } from './lab.js';

const SECONDS = 15;
const SEED = Number(process.env.FUZZ_SEED ?? 20261121);

async function memory(proxy: ProxyProcess): Promise<{ rss: number; heap: number }> {
  const before = proxy.lines.length;
  process.kill(proxy.pid, 'SIGUSR2');
  for (let i = 0; i < 50; i++) {
    const m = proxy.lines
      .slice(before)
      .map((l) => /^status: .* rss ([\d.]+) MiB, heap ([\d.]+) MiB/.exec(l))
      .find(Boolean);
    if (m) return { rss: Number(m[1]), heap: Number(m[2]) };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no status line');
}

beforeAll(requireLab);

describe('hostile input through a live proxy', () => {
  let lab: Lab;
  let proxy: ProxyProcess;
  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
    proxy = await lab.proxy(['-D', '6', '-m', '500', '--max-per-client', '500'], {}, ['--expose-gc', '--max-semi-space-size=1']);
  });
  afterAll(async () => {
    await lab?.down();
  });

  it(`${SECONDS} s of random and mutated lines (seed ${SEED}): no crash, no pinhole for an invalid negotiation, memory bounded`, async () => {
    const idle = await memory(proxy);
    const r = await lab.raw(['fuzz', lab.target, String(SECONDS), String(SEED)], (SECONDS + 60) * 1000);
    expect(Number(r.sessions), JSON.stringify(r)).toBeGreaterThan(50);
    expect(proxy.exitCode).toBeNull();
    const log = proxy.log;
    expect(log).toMatch(/bad port in '/); // invalid negotiations were seen and refused
    expect(log).not.toMatch(/active: server to client port/); // and none opened a pinhole
    expect(log).not.toMatch(/fatal|uncaught/i);
    expect(await lab.waitNoPinholes(10_000)).toBe(0);
    const after = await memory(proxy);
    console.log(
      `fuzz-live: ${String(r.sessions)} sessions, ${String(r.bytes)} bytes in ${SECONDS} s; ` +
        `daemon heap ${idle.heap} -> ${after.heap} MiB, RSS ${idle.rss} -> ${after.rss} MiB (after gc)`,
    );
    expect(after.heap).toBeLessThan(idle.heap + 16);
    expect(after.rss).toBeLessThan(idle.rss * 1.5);
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    expect((await lab.get('lftp', 'port')).ok).toBe(true);
  }, 180_000);
});
