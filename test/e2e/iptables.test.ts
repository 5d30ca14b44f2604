// The iptables backend against the real kernel: its golden restore scripts load with iptables-nft and
// iptables-legacy; a SIGKILLed instance's chains are removed by the next start; an admin's ruleset reload
// or `iptables -F` under a running proxy is repaired and the next transfer works.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { execa } from 'execa';
import { PARENTS } from '../../src/firewall/iptables.js';
import { RestoreStream, spawnRestore } from '../../src/firewall/restore-stream.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type ProxyProcess, requireLab, ROOT } from './lab.js';

const VARIANTS = ['iptables-nft', ...(existsSync('/usr/sbin/iptables-legacy') ? ['iptables-legacy'] : [])];
const GOLDEN = new URL('../golden/iptables/', import.meta.url);

beforeAll(requireLab);

describe.each(VARIANTS)('golden scripts with %s', (variant) => {
  const ns = `ftpe${process.pid}xipt${variant.length}`;
  const ip6 = `ip6${variant.slice(2)}`;
  beforeAll(async () => {
    await execa('ip', ['netns', 'add', ns]);
    for (const cmd of [variant, ip6]) {
      // The parent chains the backend creates at start.
      for (const p of PARENTS) await execa('ip', ['netns', 'exec', ns, cmd, '-t', p.table, '-N', p.chain]);
    }
  });
  afterAll(async () => {
    await execa('ip', ['netns', 'del', ns], { reject: false });
  });

  const files = readdirSync(GOLDEN).filter((f) => f !== 'remove-A.rules');
  it.each(files)('%s loads, and the removal script takes it out again', async (file) => {
    const cmd = file.endsWith('.v6.rules') ? ip6 : variant;
    const text = readFileSync(new URL(file, GOLDEN), 'utf8');
    const load = await execa('ip', ['netns', 'exec', ns, `${cmd}-restore`, '--noflush'], { input: text, reject: false });
    expect(load.exitCode, load.stderr).toBe(0);
    const save = (await execa('ip', ['netns', 'exec', ns, `${cmd}-save`])).stdout;
    expect(save).toMatch(/^:FTPP-4a3b2c1d-7-D[AB] /m);
    // Which set the file used, and remove exactly that.
    const set = /:FTPP-4a3b2c1d-7-D([AB]) /.exec(save)![1];
    const remove = text
      .split('\n')
      .filter((l) => l.startsWith('*') || l === 'COMMIT' || l.startsWith(':'))
      .map((l) => (l.startsWith(':') ? `-F ${l.slice(1).split(' ')[0]}\n-X ${l.slice(1).split(' ')[0]}` : l));
    const unlink = text.split('\n').filter((l) => /^-A FTPPROXY-/.test(l)).map((l) => l.replace(/^-A/, '-D'));
    const script: string[] = [];
    for (const line of remove) {
      script.push(line);
      if (line.startsWith('*')) script.push(...unlink.filter((u) => (line === '*nat' ? /FTPPROXY-(PRE|POST)/ : line === '*filter' ? /FTPPROXY-(FWD|IN)/ : /FTPPROXY-MGL/).test(u)));
    }
    const rm = await execa('ip', ['netns', 'exec', ns, `${cmd}-restore`, '--noflush'], { input: script.join('\n') + '\n', reject: false });
    expect(rm.exitCode, `${rm.stderr}\n${script.join('\n')}`).toBe(0);
    expect((await execa('ip', ['netns', 'exec', ns, `${cmd}-save`])).stdout).not.toMatch(new RegExp(`FTPP-4a3b2c1d-7-.${set}`));
  });

  it('a kept iptables-restore: each script has committed when it resolves, a failing line is named within its script, and the next script still runs', async () => {
    for (const cmd of [variant, ip6]) {
      const stream = new RestoreStream({ command: `${cmd}-restore`, spawn: (c) => spawnRestore(c, ['ip', 'netns', 'exec', ns]) });
      const save = async () => (await execa('ip', ['netns', 'exec', ns, `${cmd}-save`, '-t', 'nat'])).stdout;
      try {
        for (const i of [1, 2, 3]) {
          await stream.apply(`*nat\n:KEPT${i} - [0:0]\n-A KEPT${i} -p tcp -j ACCEPT\n-A FTPPROXY-PRE -j KEPT${i}\nCOMMIT\n`);
          expect(await save()).toContain(`-A FTPPROXY-PRE -j KEPT${i}`);
        }
        await expect(stream.apply('*nat\n:KEPT4 - [0:0]\n-A NOSUCHCHAIN -j ACCEPT\nCOMMIT\n')).rejects.toThrow(/line 3 failed/);
        expect(await save()).not.toContain(':KEPT4 ');
        await stream.apply(`*nat\n${[1, 2, 3].map((i) => `-D FTPPROXY-PRE -j KEPT${i}\n-F KEPT${i}\n-X KEPT${i}`).join('\n')}\nCOMMIT\n`);
        expect(await save()).not.toContain('KEPT');
      } finally {
        await stream.close();
      }
    }
  });

  it('a broken script is refused (the check can fail)', async () => {
    const r = await execa('ip', ['netns', 'exec', ns, `${variant}-restore`, '--noflush'], { input: '*nat\n-A NOSUCHCHAIN -j ACCEPT\nCOMMIT\n', reject: false });
    expect(r.exitCode).not.toBe(0);
  });
});

describe.each(VARIANTS)('operations with %s', (variant) => {
  let lab: Lab;
  const env = { FTP_PROXY_IPTABLES: variant };
  const ruleset = `${ROOT}iptables-examples/forward-redirect.rules`;

  beforeAll(async () => {
    lab = await Lab.up('forward');
    lab.iptables = variant;
    await lab.loadRuleset(ruleset);
  });
  afterAll(async () => {
    await lab?.down();
  });

  it('after a SIGKILL, the next start removes the dead instance\'s chains', async () => {
    const p: ProxyProcess = await lab.proxy(['--backend', 'iptables', '-D', '7'], env);
    // three negotiations: the session's live chain set is then its third letter (C), which the sweep
    // must find too
    const client = lab.spawn('cli', ['bash', '-c', `exec 3<>/dev/tcp/${lab.target}/21; printf 'USER lab\\r\\nPASS lab\\r\\nPASV\\r\\nPASV\\r\\nPASV\\r\\n' >&3; sleep 20`]);
    for (let i = 0; i < 100 && p.lines.filter((l) => /passive: client to server port/.test(l)).length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 50 && !/^:FTPP-[0-9a-f]{8}-\d+-DC /m.test((await lab.iptablesSaves())[0]!); i++) await new Promise((r) => setTimeout(r, 100));
    expect((await lab.iptablesSaves())[0]).toMatch(/^:FTPP-[0-9a-f]{8}-\d+-DC /m);
    expect(await lab.pinholeObjects('iptables')).toBeGreaterThan(0);
    await p.signal('SIGKILL');
    expect(await lab.pinholeObjects('iptables')).toBeGreaterThan(0);
    const next = await lab.proxy(['--backend', 'iptables', '-D', '6'], env);
    expect(next.log).toMatch(/removed the chains of 1 session\(s\) of dead instances \(IPv4\)/);
    expect(await lab.pinholeObjects('iptables')).toBe(0);
    client.kill();
    expect((await lab.get('curl', 'pasv')).ok).toBe(true);
    await next.stop();
  });

  it('negotiations go through one kept iptables-restore per family, not a process each', async () => {
    const p = await lab.proxy(['--backend', 'iptables', '-D', '7'], env);
    const restores = async () =>
      (await execa('ps', ['-o', 'pid=,args=', '--ppid', String(p.child.pid)], { reject: false })).stdout
        .split('\n')
        .filter((l) => /-restore --noflush --wait$/.test(l))
        .map((l) => l.trim());
    const before = await restores();
    expect(before.length, p.log).toBeGreaterThanOrEqual(2); // per family: one for additions, one for removals
    expect(before.join('\n')).toMatch(new RegExp(`${variant}-restore`));
    for (const [client, mode] of [['lftp', 'pasv'], ['curl', 'port'], ['curl', 'pasv']] as const) {
      const r = await lab.get(client, mode);
      expect(r.ok, `${r.output}\n${p.log}`).toBe(true);
    }
    expect(await restores()).toEqual(before);
    expect(p.log).toMatch(new RegExp(`through a kept ${variant}-restore per family`));
    expect(await p.signal('SIGTERM')).toBe(0);
    expect(await lab.proxyObjects('iptables')).toBe(false);
  });

  it('without stdbuf the kept process cannot answer: the proxy says so and starts a process per change', async () => {
    // PATH without /usr/bin, where stdbuf lives (iptables and ip are in /usr/sbin)
    const p = await lab.proxy(['--backend', 'iptables', '-D', '7'], { ...env, PATH: '/usr/sbin:/sbin' });
    expect(p.log).toMatch(new RegExp(`iptables: no kept ${variant}-restore process \\(.*cannot start stdbuf ${variant}-restore: .*ENOENT.*\\); a process per change instead`));
    const r = await lab.get('curl', 'pasv');
    expect(r.ok, `${r.output}\n${p.log}`).toBe(true);
    expect(await p.signal('SIGTERM')).toBe(0);
    expect(await lab.proxyObjects('iptables')).toBe(false);
  });

  it('-vv and -q act on both directions of the data connection', async () => {
    const p = await lab.proxy(['--backend', 'iptables', '-vv', '-q', '1:10'], env);
    const download = lab.get('lftp', 'pasv', 'test20M.bin', { RATE: '4M' });
    await new Promise((r) => setTimeout(r, 2500));
    const mangle = (await lab.exec('fw', [`${variant}-save`, '-c', '-t', 'mangle'])).stdout;
    const m = /^\[\d+:(\d+)\] -A FTPP-[0-9a-f]{8}-\d+-M[AB] .*-j CLASSIFY --set-class 0001:0010$/m.exec(mangle) ?? /^\[\d+:(\d+)\] -A FTPP-[0-9a-f]{8}-\d+-M[AB] .*CLASSIFY.*$/m.exec(mangle);
    expect(m, mangle).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(4_000_000); // the server's data, not only the client's ACKs
    expect((await download).ok).toBe(true);
    await p.stop();
  });

  it('an admin reload of the ruleset, and a flush-and-reload, under a running proxy: the next transfer works', async () => {
    const p = await lab.proxy(['--backend', 'iptables', '-D', '6'], env);
    expect((await lab.get('lftp', 'pasv')).ok).toBe(true);
    await lab.loadRuleset(ruleset); // a full iptables-restore: our chains and jumps are gone
    expect((await lab.iptablesSaves())[0]).not.toMatch(/FTPPROXY/);
    const r1 = await lab.get('lftp', 'port');
    expect(r1.ok, `${r1.output}\n${p.log}`).toBe(true);
    // The reload scripts admins write: flush, then add their rules again (our chains stay, emptied,
    // and the jump from FORWARD is gone).
    await lab.exec('fw', ['bash', '-c', `${variant} -F && ${variant}-restore --noflush < ${ruleset}`]);
    expect((await lab.iptablesSaves())[0]).not.toMatch(/-A FORWARD .*-j FTPPROXY-FWD/);
    const r2 = await lab.get('curl', 'pasv');
    expect(r2.ok, `${r2.output}\n${p.log}`).toBe(true);
    expect(p.log).toMatch(/repairing and retrying|restored them/);

    // Ten sessions negotiating at once into a flushed FORWARD: the repairs run one at a time and each
    // reads what the one before wrote, so exactly one jump comes back (concurrent repairs inserted one
    // each), and no chain is emptied under its sessions (`:CHAIN - [0:0]` under --noflush did that).
    await lab.exec('fw', ['bash', '-c', `${variant} -F && ${variant}-restore --noflush < ${ruleset}`]);
    const load = await lab.raw(['load', lab.target, '10', '1', `small.txt:${lab.sha256('small.txt')}`], 120_000);
    expect(load.ok, `${JSON.stringify(load)}\n${p.lines.filter((l) => /iptables|fail|error|425|421/i.test(l)).join('\n')}`).toBe(10);
    const save = (await lab.iptablesSaves())[0]!;
    // first packets only: established data skips the session chains
    expect(save.match(/^-A FORWARD .*-j FTPPROXY-FWD$/gm), save).toEqual(['-A FORWARD -m conntrack --ctstate NEW -j FTPPROXY-FWD']);
    expect(save.match(/^-A PREROUTING -j FTPPROXY-PRE$/gm), save).toHaveLength(1);
    // The stop removes what is left in one iptables-restore per family, within the 10 s of signal().
    expect(await p.signal('SIGTERM')).toBe(0);
    expect(await lab.proxyObjects('iptables'), `${(await lab.iptablesSaves()).join('\n')}\n${p.log}`).toBe(false);
  }, 150_000);
});
