// `ftp-proxy status` reads the live pinholes from the kernel (nftables and iptables) while a session
// holds one: waiting, then used once its data connection came, then gone with the session.
// `ftp-proxy --print-rules` changes nothing, and what it prints is what the kernel accepts.
import type { ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { PARENTS } from '../../src/firewall/iptables.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, EXAMPLES, Lab, requireLab, ROOT } from './lab.js';

beforeAll(requireLab);

/** Resolves with each JSON line the raw client prints, in order. */
function phases(child: ChildProcess): (phase: string, ms?: number) => Promise<Record<string, unknown>> {
  const seen: Record<string, unknown>[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      seen.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
      buf = buf.slice(i + 1);
    }
  });
  return async (phase, ms = 15_000) => {
    const end = Date.now() + ms;
    for (;;) {
      const hit = seen.find((o) => o.phase === phase || o.error);
      if (hit?.error) throw new Error(`ftp-raw: ${String(hit.error)}`);
      if (hit) return hit;
      if (Date.now() > end) throw new Error(`ftp-raw: no "${phase}" within ${ms} ms (saw ${JSON.stringify(seen)})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
}

interface StatusJson {
  backend: string;
  present: boolean;
  instances: { id: string; pid: number | null; running: boolean; sockets: { state: string; remote: string }[] }[];
  sessions: { instance: string; session: number; pinholes: { from: string; to: string; toPort: number; rdrTo: string; rdrPort: number; natFrom: string; state: string; expires: number | null }[] }[];
}

describe.each([
  { backend: 'nftables' as const, ruleset: `${EXAMPLES}forward-redirect.nft`, env: {} as Record<string, string> },
  { backend: 'iptables' as const, ruleset: `${ROOT}iptables-examples/forward-redirect.rules`, env: { FTP_PROXY_IPTABLES: 'iptables' } as Record<string, string> },
])('ftp-proxy status, $backend', ({ backend, ruleset, env }) => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await Lab.up('forward');
    await lab.loadRuleset(ruleset);
  });
  afterAll(async () => {
    await lab?.down();
  });

  const status = async (json: boolean): Promise<string> => {
    const r = await lab.exec('fw', ['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, 'status', '--backend', backend, ...(json ? ['--json'] : [])], {
      reject: false,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout;
  };
  const statusJson = async (): Promise<StatusJson> => (JSON.parse(await status(true)) as StatusJson[])[0]!;

  it('lists the session, its pinhole waiting, then used, then nothing once the session ended', async () => {
    expect(await status(false)).toMatch(new RegExp(`^${backend}: no `, 'm'));
    const proxy = await lab.proxy(['--backend', backend, '--pinhole-timeout', '60'], env);
    // The instance is known by its random id; status finds its pid (the holder of @ftp-proxy/<id>).
    const idle = await statusJson();
    expect(idle.instances).toEqual([expect.objectContaining({ pid: proxy.pid, running: true })]);
    const id = idle.instances[0]!.id;
    expect(id).toMatch(/^[0-9a-f]{8}$/);
    // 12 s before the data connection and 12 s after: two status runs each time (node start-up each, seconds on a busy machine).
    const raw = lab.rawSpawn(['pasv-hold', lab.target, '12', '12']);
    const next = phases(raw);
    const pasv = await next('pasv');

    const waiting = await statusJson();
    expect(waiting.present).toBe(true);
    expect(waiting.instances).toEqual([expect.objectContaining({ id, pid: proxy.pid, running: true })]);
    // The kernel's view of the daemon: its listener and the client's control connection.
    expect(waiting.instances[0]!.sockets.some((s) => s.state === 'established' && s.remote === lab.clientAddress)).toBe(true);
    expect(waiting.sessions).toHaveLength(1);
    const s = waiting.sessions[0]!;
    expect(s.instance).toBe(id);
    expect(s.pinholes).toEqual([
      expect.objectContaining({ from: lab.clientAddress, to: lab.serverAddress, toPort: pasv.port, rdrTo: lab.serverAddress, state: 'waiting' }),
    ]);
    expect(s.pinholes[0]!.rdrPort).toBeGreaterThan(1023);
    expect(s.pinholes[0]!.natFrom).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(s.pinholes[0]!.expires).toBeGreaterThan(40);
    expect(s.pinholes[0]!.expires).toBeLessThanOrEqual(60);

    const text = await status(false);
    expect(text).toMatch(new RegExp(`^instance ${id} \\(pid ${proxy.pid}\\): running, listening on 127\\.0\\.0\\.1:8021, 2 control-channel TCP connections$`, 'm'));
    expect(text).toMatch(new RegExp(`^session ${id}\\.\\d+: 1 pinhole$`, 'm'));
    expect(text).toContain(`  ${lab.clientAddress} -> ${lab.serverAddress}:${String(pasv.port)} => ${lab.serverAddress}:`);
    expect(text).toMatch(/ waiting for its connection, expires in \d+s$/m);

    const connected = await next('connected');
    expect(connected.result).toBe('connected');
    const used = await statusJson();
    expect(used.sessions[0]?.pinholes[0]?.state).toBe('used');
    expect(await status(false)).toMatch(/ used \(its one connection came\)/);

    await next('done');
    await lab.waitNoPinholeObjects(backend);
    const after = await statusJson();
    expect(after.sessions).toEqual([]);
    expect(await status(false)).toMatch(/^no pinholes$/m);
    await proxy.stop();
  });

  it('--watch redraws the live view every second until interrupted', async () => {
    const proxy = await lab.proxy(['--backend', backend], env);
    const w = lab.spawn('fw', ['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, 'status', '--backend', backend, '--watch']);
    let out = '';
    w.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const frames = (): string[] => out.split('\x1b[H\x1b[2J').filter(Boolean);
    for (let i = 0; i < 150 && frames().length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    const exited = new Promise<number | null>((r) => w.on('exit', (code) => r(code)));
    w.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(frames().length).toBeGreaterThanOrEqual(3);
    for (const f of frames().slice(0, 3)) {
      expect(f).toMatch(/^ftp-proxy status, every 1 s \(\^C to stop\) {3}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n\n/);
      expect(f).toMatch(new RegExp(`^instance [0-9a-f]{8} \\(pid ${proxy.pid}\\): running`, 'm'));
    }
    await proxy.stop();
  });

  it('--log-format json: every line is one JSON event; a session\'s lines carry session, client, server, and the negotiation its pinhole', async () => {
    const proxy = await lab.proxy(['--backend', backend, '--log-format', 'json', '-D7'], env);
    expect((await lab.get('curl', 'pasv', 'small.txt')).ok).toBe(true);
    expect((await lab.get('lftp', 'port', 'small.txt')).ok).toBe(true);
    for (let i = 0; i < 100 && proxy.lines.filter((l) => l.includes('"event":"session-end"')).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    await proxy.stop();
    const lines = proxy.log.split('\n').filter(Boolean);
    const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of events) expect(Object.keys(e).slice(0, 5)).toEqual(['level', 'label', 'time', 'pid', 'hostname']);
    // "accepted" comes before the server is known (as OpenBSD logs it); every later line names both.
    const session = events.filter((e) => typeof e.session === 'number' && e.event !== 'accepted');
    expect(session.length).toBeGreaterThan(10);
    for (const e of session) expect(e).toMatchObject({ client: lab.clientAddress, server: lab.serverAddress, event: expect.any(String), msg: expect.stringMatching(/^#\d+ /) });
    const passive = events.find((e) => e.event === 'passive')!;
    expect(passive.pinhole).toMatch(new RegExp(`^${lab.clientAddress.replace(/\./g, '\\.')} -> ${lab.serverAddress.replace(/\./g, '\\.')}:\\d+ => ${lab.serverAddress.replace(/\./g, '\\.')}:\\d+ from \\S+$`));
    const active = events.find((e) => e.event === 'active')!;
    expect(active.pinhole).toMatch(new RegExp(`^${lab.serverAddress.replace(/\./g, '\\.')} -> \\S+:\\d+ => ${lab.clientAddress.replace(/\./g, '\\.')}:\\d+ from ${lab.serverAddress.replace(/\./g, '\\.')}$`));
    for (const ev of ['listening', 'session-start', 'client-line', 'server-line', 'session-end', 'exiting']) expect(events.map((e) => e.event)).toContain(ev);
  });

  it('says which instance is gone after a SIGKILL (its objects wait for the next start)', async () => {
    const proxy = await lab.proxy(['--backend', backend, '--pinhole-timeout', '60'], env);
    const id = (await statusJson()).instances[0]!.id;
    const raw = lab.rawSpawn(['pasv-hold', lab.target, '30', '0']);
    const next = phases(raw);
    await next('pasv');
    await proxy.signal('SIGKILL');
    const st = await statusJson();
    expect(st.instances).toEqual([expect.objectContaining({ id, pid: null, running: false })]);
    expect(st.sessions.map((x) => x.instance)).toEqual([id]);
    expect(await status(false)).toMatch(new RegExp(`^instance ${id}: gone `, 'm'));
    raw.kill();
    // The next start sweeps them; status agrees.
    const p2 = await lab.proxy(['--backend', backend], env);
    expect((await statusJson()).sessions).toEqual([]);
    await p2.stop();
  });
});

const ACTIVE_POLICY = `/tmp/ftpe${process.pid}-data-mode-active.policy`;
const PASSIVE_POLICY = `${ROOT}policy-examples/passive-server.policy`;

describe('ftp-proxy --print-rules changes nothing, and the kernel takes what it prints', () => {
  const NS = `ftpe${process.pid}xprint`;
  beforeAll(async () => {
    await execa('ip', ['netns', 'add', NS]);
    writeFileSync(ACTIVE_POLICY, 'data_mode active\n');
  });
  afterAll(async () => {
    await execa('ip', ['netns', 'del', NS], { reject: false });
    rmSync(ACTIVE_POLICY, { force: true });
  });
  const inNs = (cmd: string[], input?: string) => execa('ip', ['netns', 'exec', NS, ...cmd], { reject: false, ...(input !== undefined ? { input } : {}) });
  const print = async (args: string[]): Promise<string> => {
    const r = await inNs([process.execPath, CLI, '--print-rules', ...args]);
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout;
  };
  const statements = (text: string): string => text.split('\n').filter((l) => l && !l.startsWith('#')).join('\n') + '\n';

  it.each([[[]], [['-r']], [['-vv', '-T', '7', '-q', '1:10']], [['-6']], [['-R', '10.0.0.21', '-b', '203.0.113.5']], [['-v', '--pinhole-timeout', '5']], [['-f', ACTIVE_POLICY]], [['-f', PASSIVE_POLICY, '-6']]])(
    'nftables %j: prints a script nft loads as printed; the firewall is untouched by printing',
    async (flags) => {
      await inNs(['nft', 'flush', 'ruleset']);
      const text = await print(['--backend', 'nftables', ...flags]);
      expect((await inNs(['nft', 'list', 'ruleset'])).stdout).toBe('');
      expect(text).toMatch(/^# ftp-proxy --print-rules: nftables, /);
      expect(text).toMatch(/^create element inet ftp-proxy oncev?[46] /m);
      // nft cannot read Node's pipes as a file: bash's process substitution gives it one.
      const load = await inNs(['bash', '-c', 'nft -f <(cat)'], statements(text));
      expect(load.exitCode, load.stderr).toBe(0);
      // Each negotiation replaced the one before, and the removal at the end took the last one out.
      const left = (await inNs(['nft', 'list', 'map', 'inet', 'ftp-proxy', flags.includes('-6') ? 'dnat6' : 'dnat4'])).stdout;
      expect(left).not.toMatch(/comment "4242\.1"/);
      await inNs(['nft', 'flush', 'ruleset']);
    },
  );

  it('nftables -f with tls_client passthrough: the session\'s range pinhole is printed too, and loads', async () => {
    const policy = `${ACTIVE_POLICY}.passthrough`;
    writeFileSync(policy, 'tls_client passthrough\ntls_passthrough_ports 50000-50100\n');
    try {
      await inNs(['nft', 'flush', 'ruleset']);
      const text = await print(['--backend', 'nftables', '-f', policy]);
      expect(text).toMatch(/^create element inet ftp-proxy rangev4 \{ [^}]* 50000-50100 /m);
      const load = await inNs(['bash', '-c', 'nft -f <(cat)'], statements(text));
      expect(load.exitCode, load.stderr).toBe(0);
    } finally {
      rmSync(policy, { force: true });
      await inNs(['nft', 'flush', 'ruleset']);
    }
  });

  it.each([[[]], [['-r', '-v']], [['-vv', '-T', '0x2a', '-q', '1:10']], [['-6']], [['-f', ACTIVE_POLICY]]])('iptables %j: iptables-restore takes every block as printed', async (flags) => {
    const v6 = flags.includes('-6');
    const cmd = v6 ? 'ip6tables' : 'iptables';
    const text = await print(['--backend', 'iptables', ...flags]);
    expect((await inNs([`${cmd}-save`])).stdout).not.toMatch(/FTPP/);
    // The parent chains the backend creates at start.
    for (const p of PARENTS) await inNs([cmd, '-t', p.table, '-N', p.chain]);
    // Each *table ... COMMIT block is one iptables-restore transaction, in the order printed.
    const blocks = statements(text).split(/(?<=^COMMIT\n)/m).filter((b) => b.trim());
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    for (const b of blocks) {
      const r = await inNs([`${cmd}-restore`, '--noflush'], b);
      expect(r.exitCode, `${r.stderr}\n${b}`).toBe(0);
    }
    // Everything printed was also removed by what was printed.
    expect((await inNs([`${cmd}-save`])).stdout).not.toMatch(/FTPP-/);
    for (const table of ['nat', 'filter', 'mangle']) {
      await inNs([cmd, '-t', table, '-F']);
      await inNs([cmd, '-t', table, '-X']);
    }
  });
});
