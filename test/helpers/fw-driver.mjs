#!/usr/bin/env node
// A firewall backend (dist/) driven line by line, for end-to-end tests that must change a namespace's
// firewall and never the test runner's own: run it with `ip netns exec NS node fw-driver.mjs BACKEND
// [LOG]`. Each stdin line is a JSON request {op: init|replace|clear|close, owner?, pinholes?}; each answer
// one JSON line on stdout, {ok: true, instance} or {error, message}. The process holds the backend's
// instance identity while it lives, so a SIGKILL leaves a dead instance's objects for the next sweep.
import { createInterface } from 'node:readline';
import { IptablesBackend } from '../../dist/firewall/iptables.js';
import { createNftRunner } from '../../dist/firewall/nft-runner.js';
import { NftablesBackend } from '../../dist/firewall/nftables.js';

const [backendName, log = '0'] = process.argv.slice(2);
const rules = { log: Number(log), timeout: 30 };
const warn = (m) => process.stderr.write(`warn: ${m}\n`);
const backend =
  backendName === 'nftables'
    ? new NftablesBackend({ rules, runner: createNftRunner(), warn })
    : new IptablesBackend({ rules, command: process.env.FTP_PROXY_IPTABLES ?? 'iptables', warn });

const answer = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const req = JSON.parse(line);
  try {
    if (req.op === 'init') await backend.init();
    else if (req.op === 'replace') await backend.replace(req.owner, req.pinholes);
    else if (req.op === 'clear') await backend.clear(req.owner);
    else if (req.op === 'close') await backend.close();
    else throw new Error(`unknown op ${req.op}`);
    answer({ ok: true, instance: backend.instance });
  } catch (e) {
    answer({ error: e.name, message: e.message });
  }
  if (req.op === 'close') process.exit(0);
}
