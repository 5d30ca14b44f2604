#!/usr/bin/env node
// The daemon of dist/ (the same Daemon class dist/cli.js runs with -d), hosted for the sessions benchmark:
// -m stops at OpenBSD's 500, so the session limit comes from BENCH_MAX_SESSIONS instead; and the host
// answers questions on stdin with one JSON line on stdout:
//   stats    memory after a full GC (run node with --expose-gc), session count, event-loop delay since
//            the last reset (perf_hooks.monitorEventLoopDelay, sampled every millisecond), in ms
//   reset    start a new event-loop delay window
// Start it like the CLI: node --expose-gc --max-semi-space-size=1 daemon-host.mjs -d [flags]
// BENCH_FIREWALL=none replaces the firewall with one that does nothing (the relay's own cost, diagnostic).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgv } from '../dist/config.js';
import { Daemon } from '../dist/daemon.js';
import { Log } from '../dist/log.js';

const outcome = parseArgv(process.argv.slice(2), 'bench');
if (!outcome.config) {
  process.stderr.write(outcome.stderr ?? 'daemon-host: bad arguments\n');
  process.exit(2);
}
const config = outcome.config;
config.maxSessions = Number(process.env.BENCH_MAX_SESSIONS ?? config.maxSessions);
// Every bench session comes from one client address: the per-address cap must not be the limit.
config.maxPerClient = config.maxSessions;
const log = new Log({ level: config.logLevel, format: config.logFormat });
// BENCH_FIREWALL=none: a firewall that does nothing, to tell the relay's own cost from the firewall's.
const none = { name: 'none', init: async () => {}, replace: async () => {}, clear: async () => {}, close: async () => {} };
const daemon = new Daemon({ config, log, ...(process.env.BENCH_FIREWALL === 'none' ? { firewall: none } : {}) });
await daemon.start();
process.stderr.write('daemon-host: ready\n');

let eld = monitorEventLoopDelay({ resolution: 1 });
eld.enable();
const ms = (ns) => Math.round(ns / 1e4) / 100;

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const what = line.trim();
  if (what === 'reset') {
    eld.disable();
    eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    process.stdout.write('{"reset":true}\n');
  } else if (what === 'stats') {
    const e = { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) };
    globalThis.gc?.();
    globalThis.gc?.();
    const m = process.memoryUsage();
    process.stdout.write(`${JSON.stringify({ sessions: daemon.sessionCount, rss: m.rss, heapUsed: m.heapUsed, external: m.external, eld: e })}\n`);
  }
});
rl.on('close', async () => {
  await daemon.stop();
  process.exit(0);
});
for (const s of ['SIGTERM', 'SIGINT']) {
  process.on(s, async () => {
    await daemon.stop();
    process.exit(0);
  });
}
