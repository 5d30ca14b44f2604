// The range pinhole of tls_client passthrough against the real kernel, in a lab whose firewall forwards
// nothing but what the proxy admits (the shipped example without its "the LAN goes out" lines): the
// backend (dist/, driven by test/helpers/fw-driver.mjs inside the firewall namespace) installs
// C -> OS:50000-50100 => S from P; connections to two ports of the range, and to one port twice, reach
// the server from P; a port outside the range is dropped; clear() leaves no object; the start-up sweep
// removes the range pinholes of an instance that was killed.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { passivePinhole, passthroughPinhole, type Pinhole, type SessionEnds } from '../../src/firewall/backend.js';
import { type NftJson, ownedElements } from '../../src/firewall/nftables.js';
import { type Backend, EXAMPLES, Lab, requireLab, ROOT } from './lab.js';

const DRIVER = `${ROOT}test/helpers/fw-driver.mjs`;
const ends: SessionEnds = { family: 4, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
const RANGE = passthroughPinhole(ends, 50000, 50100);

/** A backend in the firewall namespace, one request at a time. */
class Driver {
  private readonly lines: Interface;
  private readonly pending: ((line: string) => void)[] = [];
  stderr = '';

  constructor(readonly child: ChildProcess) {
    this.lines = createInterface({ input: child.stdout! });
    this.lines.on('line', (l) => this.pending.shift()?.(l));
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  async send(req: { op: string; owner?: { instance: string; session: number }; pinholes?: Pinhole[] }): Promise<{ ok?: true; instance?: string; error?: string; message?: string }> {
    const answer = new Promise<string>((resolve, reject) => {
      this.pending.push(resolve);
      this.child.once('exit', () => reject(new Error(`fw-driver exited: ${this.stderr}`)));
    });
    this.child.stdin!.write(`${JSON.stringify(req)}\n`);
    return JSON.parse(await answer) as { ok?: true; instance?: string; error?: string; message?: string };
  }

  /** Send and insist on success; the instance id. */
  async ok(req: Parameters<Driver['send']>[0]): Promise<string> {
    const r = await this.send(req);
    if (!r.ok) throw new Error(`fw-driver ${req.op}: ${r.error}: ${r.message}\n${this.stderr}`);
    return r.instance!;
  }
}

const CASES: { name: string; backend: Backend; example: string; log: 0 | 1 }[] = [
  { name: 'nftables', backend: 'nftables', example: `${EXAMPLES}forward-redirect.nft`, log: 0 },
  // -v: the instance's own range chain (label, log, then DNAT)
  { name: 'nftables -v', backend: 'nftables', example: `${EXAMPLES}forward-redirect.nft`, log: 1 },
  { name: 'iptables', backend: 'iptables', example: `${ROOT}iptables-examples/forward-redirect.rules`, log: 0 },
];

describe.each(CASES)('range pinhole with $name', ({ backend, example, log }) => {
  let lab: Lab;
  const accepted: { port: number; from: string }[] = [];
  /** Drivers started here (Lab.spawn gives no stdin); killed in afterAll, by pid. */
  const drivers = new Set<ChildProcess>();

  const driver = (): Driver => {
    const c = spawn('ip', ['netns', 'exec', lab.fw, 'env', `FTP_PROXY_IPTABLES=${lab.iptables}`, process.execPath, DRIVER, backend, String(log)], { stdio: ['pipe', 'pipe', 'pipe'] });
    drivers.add(c);
    return new Driver(c);
  };

  /** A TCP connection from the client to OS:port: "ok" (accepted: the listener closes it), "timeout" (dropped). */
  const dial = async (port: number): Promise<string> => {
    const js = `const s=require('net').connect(${port},'198.51.100.21');s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('connect',()=>{console.log('ok');s.destroy();process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})`;
    return (await lab.exec('cli', [process.execPath, '-e', js])).stdout.trim();
  };

  /** The sources the server saw on `port` since `since` accepted connections. */
  const seen = async (port: number, since: number): Promise<string[]> => {
    await new Promise((r) => setTimeout(r, 100));
    return accepted.slice(since).filter((a) => a.port === port).map((a) => a.from);
  };

  beforeAll(async () => {
    await requireLab();
    lab = await Lab.up('forward');
    await lab.loadRuleset(lab.closedLan(example));
    // Listeners on the server: in the range, outside it, and a passive pinhole's server port.
    const js = `const net=require('net');let n=0;const ports=process.argv.slice(1).map(Number);for(const p of ports){net.createServer(c=>{console.log(JSON.stringify({port:p,from:c.remoteAddress.replace(/^::ffff:/,'')}));c.destroy()}).listen(p,'198.51.100.21',()=>{if(++n===ports.length)console.log('ready')})}`;
    const srv = lab.spawn('srv', [process.execPath, '-e', js, '50010', '50090', '50050', '40001', '51000']);
    await new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: srv.stdout! });
      rl.on('line', (l) => (l === 'ready' ? resolve() : accepted.push(JSON.parse(l) as { port: number; from: string })));
      srv.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
    });
  }, 60_000);

  afterAll(async () => {
    for (const c of drivers) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await lab?.down();
  });

  it('admits any number of connections to every port of the range, from P; drops a port outside; clear leaves nothing', async () => {
    const d = driver();
    const id = await d.ok({ op: 'init' });
    const owner = { instance: id, session: 1 };
    expect(await dial(50010)).toBe('timeout'); // nothing open yet: the firewall forwards nothing
    await d.ok({ op: 'replace', owner, pinholes: [RANGE] });
    const before = accepted.length;
    expect(await dial(50010)).toBe('ok');
    expect(await dial(50090)).toBe('ok');
    expect(await dial(50010)).toBe('ok'); // not single-use
    expect(await dial(51000)).toBe('timeout'); // outside the range
    expect(await seen(50010, before)).toEqual(['198.51.100.1', '198.51.100.1']);
    expect(await seen(50090, before)).toEqual(['198.51.100.1']);
    expect(await seen(51000, before)).toEqual([]);
    expect(await lab.pinholeObjects(backend)).toBeGreaterThan(0);
    await d.ok({ op: 'clear', owner });
    expect(await lab.pinholeObjects(backend)).toBe(0);
    expect(await dial(50090)).toBe('timeout'); // gone with its session
    await d.ok({ op: 'close' });
    expect(await lab.proxyObjects(backend)).toBe(false);
  }, 60_000);

  it('two sessions holding one range: it stays until the last one ends', async () => {
    const d = driver();
    const id = await d.ok({ op: 'init' });
    const [s1, s2] = [{ instance: id, session: 1 }, { instance: id, session: 2 }];
    await d.ok({ op: 'replace', owner: s1, pinholes: [RANGE] });
    await d.ok({ op: 'replace', owner: s2, pinholes: [RANGE] });
    await d.ok({ op: 'clear', owner: s1 });
    expect(await dial(50010)).toBe('ok');
    await d.ok({ op: 'clear', owner: s2 });
    expect(await dial(50010)).toBe('timeout');
    expect(await lab.pinholeObjects(backend)).toBe(0);
    await d.ok({ op: 'close' });
  }, 60_000);

  it("the start-up sweep removes a killed instance's range pinhole", async () => {
    const dead = driver();
    const id = await dead.ok({ op: 'init' });
    await dead.ok({ op: 'replace', owner: { instance: id, session: 9 }, pinholes: [RANGE] });
    expect(await dial(50010)).toBe('ok');
    dead.child.kill('SIGKILL');
    await new Promise((r) => dead.child.once('exit', r));
    expect(await lab.pinholeObjects(backend)).toBeGreaterThan(0); // left behind
    const next = driver();
    await next.ok({ op: 'init' });
    expect(await lab.pinholeObjects(backend)).toBe(0);
    expect(next.stderr).toMatch(backend === 'nftables' ? /removed \d+ stale element\(s\) left by 1 dead instance/ : /removed the chains of 1 session\(s\) of dead instances/);
    expect(await dial(50010)).toBe('timeout');
    await next.ok({ op: 'close' });
  }, 60_000);

  // nftables only: an iptables repair restores the parent chains, never a session's own (as for every pinhole)
  if (backend === 'nftables') {
    it('after a ruleset reload removed the table, the repair at the next negotiation puts the live range back', async () => {
      const d = driver();
      const id = await d.ok({ op: 'init' });
      await d.ok({ op: 'replace', owner: { instance: id, session: 1 }, pinholes: [RANGE] });
      await lab.exec('fw', ['nft', 'delete', 'table', 'inet', 'ftp-proxy']);
      expect(await dial(50010)).toBe('timeout'); // the range went with it
      // another session negotiates: its change fails (ENOENT), the backend repairs
      await d.ok({ op: 'replace', owner: { instance: id, session: 2 }, pinholes: [passivePinhole(ends, 40001, 61000)] });
      expect(d.stderr).toMatch(/missing or damaged/);
      expect(await dial(50010)).toBe('ok');
      await d.ok({ op: 'clear', owner: { instance: id, session: 1 } });
      await d.ok({ op: 'clear', owner: { instance: id, session: 2 } });
      expect(await lab.pinholeObjects(backend)).toBe(0);
      await d.ok({ op: 'close' });
    }, 60_000);
  }

  it('a used passive pinhole whose proxy port lies in a range does not take the range\'s connections', async () => {
    // Session 5 (plain FTP) got C -> OS:50050 => S:40001; session 6 (passthrough) the range 50000-50100.
    const d = driver();
    const id = await d.ok({ op: 'init' });
    await d.ok({ op: 'replace', owner: { instance: id, session: 5 }, pinholes: [passivePinhole(ends, 40001, 50050)] });
    await d.ok({ op: 'replace', owner: { instance: id, session: 6 }, pinholes: [RANGE] });
    const before = accepted.length;
    expect(await dial(50050)).toBe('ok'); // the passive pinhole's one connection, to S:40001
    expect(await dial(50050)).toBe('ok'); // now the range's: to S:50050, not S:40001 again
    expect(await seen(40001, before)).toEqual(['198.51.100.1']);
    expect(await seen(50050, before)).toEqual(['198.51.100.1']);
    await d.ok({ op: 'clear', owner: { instance: id, session: 5 } });
    await d.ok({ op: 'clear', owner: { instance: id, session: 6 } });
    expect(await lab.pinholeObjects(backend)).toBe(0);
    await d.ok({ op: 'close' });
  }, 60_000);
});

// The golden scripts of the range pinholes (test/unit/nftables.test.ts) in a real kernel, as
// test/e2e/nft-golden.test.ts loads the others: the tables with the range maps and chains load twice
// unchanged, and range.nft (plain and -v/-T elements, IPv4 and IPv6, created then removed) leaves nothing.
describe('range golden scripts load into a real kernel', () => {
  const NS = `ftpe${process.pid}xrange`;
  const golden = (name: string): string => readFileSync(new URL(`../golden/nftables/${name}`, import.meta.url), 'utf8');
  const nft = (args: string[], input?: string) =>
    execa('ip', ['netns', 'exec', NS, 'bash', '-c', `nft ${args.join(' ')}`], { ...(input !== undefined ? { input } : {}), reject: false });

  beforeAll(async () => {
    await requireLab();
    await execa('ip', ['netns', 'add', NS]);
  });
  afterAll(async () => {
    await execa('ip', ['netns', 'del', NS], { reject: false });
  });

  it('range.nft after table-v-tag.nft: every element created, then none', async () => {
    expect((await nft(['-f', '<(cat)'], golden('table-v-tag.nft'))).exitCode).toBe(0);
    const r = await nft(['-f', '<(cat)'], golden('range.nft'));
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await nft(['list', 'table', 'inet', 'ftp-proxy'])).stdout).not.toMatch(/elements/);
    // the creations alone, one owner at a time (plain and -v/-T elements share their keys): each
    // creates every element, and what the sweep reads back deletes them again
    for (const owner of ['4a3b2c1d.7', '4a3b2c1d.8']) {
      const creates = golden('range.nft').split('\n').filter((l) => l.startsWith('create') && l.includes(`"${owner}"`));
      expect(creates).toHaveLength(6); // rangev, rdnat, rfrom; IPv4 and IPv6
      const c = await nft(['-f', '<(cat)'], creates.join('\n') + '\n');
      expect(c.exitCode, c.stderr).toBe(0);
      const listing = (await nft(['-j', 'list', 'table', 'inet', 'ftp-proxy'])).stdout;
      expect(listing.split(`"comment": "${owner}"`).length - 1).toBe(creates.length);
      const owned = ownedElements(JSON.parse(listing) as NftJson);
      const del = await nft(['-f', '<(cat)'], owned.map((e) => `delete element inet ftp-proxy ${e.object} { ${e.key} }`).join('\n') + '\n');
      expect(del.exitCode, del.stderr).toBe(0);
    }
    expect((await nft(['list', 'table', 'inet', 'ftp-proxy'])).stdout).not.toMatch(/elements/);
  });
});
