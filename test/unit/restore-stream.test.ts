// The kept iptables-restore process, against a fake that behaves as the real tool does: blocks commit
// at COMMIT, `-S OUTPUT` lists `-P OUTPUT ACCEPT`, a failing line ends the process with "line N failed"
// counted over everything it has read. (test/e2e/iptables.test.ts runs the same against the real tools.)
import { describe, expect, it } from 'vitest';
import { failedLine, mergeByTable, renumber, type RestoreProcess, RestoreStream } from '../../src/firewall/restore-stream.js';

interface Fake extends RestoreProcess {
  committed: string[][];
  ended: boolean;
}

/** A fake iptables-restore: lines containing FAIL fail; `hang` never answers. */
function fakeTool(opts: { hang?: boolean; startError?: boolean } = {}) {
  const procs: Fake[] = [];
  const spawn = (): RestoreProcess => {
    let lineCb: (l: string) => void = () => undefined;
    let errCb: (t: string) => void = () => undefined;
    let exitCb: (code: number | null, e?: Error) => void = () => undefined;
    let n = 0;
    let block: string[] = [];
    let dead = false;
    const p: Fake = {
      committed: [],
      ended: false,
      write(text) {
        if (dead || opts.hang) return;
        for (const line of text.split('\n').slice(0, -1)) {
          n++;
          if (line.includes('FAIL')) {
            dead = true;
            setImmediate(() => {
              errCb(`iptables-restore: line ${n} failed: No chain/target/match by that name.\n`);
              exitCb(1);
            });
            return;
          }
          if (line === 'COMMIT') {
            const b = block;
            p.committed.push(b);
            block = [];
            // listings print at their line, before the commit; OUTPUT has one rule of the admin's
            const lists = b.filter((l) => l.startsWith('-S ')).map((l) => l.slice(3));
            setImmediate(() => {
              for (const c of lists) {
                if (c !== 'OUTPUT') lineCb('# Warning: iptables-legacy tables present, use iptables-legacy to see them');
                lineCb(`-P ${c} ACCEPT`);
                lineCb(c === 'OUTPUT' ? '-A OUTPUT -o lo -j ACCEPT' : `-A ${c} -j FTPPROXY-${c}`);
              }
            });
          } else if (line && !line.startsWith('*')) block.push(line);
        }
      },
      onLine: (cb) => (lineCb = cb),
      onStderr: (cb) => (errCb = cb),
      onExit: (cb) => {
        exitCb = cb;
        if (opts.startError) setImmediate(() => cb(null, new Error('spawn stdbuf ENOENT')));
      },
      end: () => (p.ended = true),
      kill: () => {
        dead = true;
        setImmediate(() => exitCb(null));
      },
    };
    procs.push(p);
    return p;
  };
  return { procs, spawn };
}

const ADD = (i: number) => `*nat\n:C${i} - [0:0]\n-A C${i} -j ACCEPT\nCOMMIT\n`;

describe('failed line', () => {
  it.each([
    ['iptables-restore: line 12 failed: No chain/target/match by that name.', 12],
    ['iptables-restore: line 3 failed', 3],
    ['Bad argument `foo\'', null],
  ])('%s -> %s', (text, want) => expect(failedLine(text)).toBe(want));
  it('counts from the script\'s first line', () => {
    expect(renumber('iptables-nft-restore: line 14 failed: x', 11)).toBe('iptables-nft-restore: line 4 failed: x');
  });
});

describe('removals merged into one block per table', () => {
  it.each([
    [['*nat\n-X A\nCOMMIT\n'], '*nat\n-X A\nCOMMIT\n'],
    [['*nat\n-D P -j A\n-X A\nCOMMIT\n*filter\n-X F\nCOMMIT\n', '*nat\n-D P -j B\n-X B\nCOMMIT\n*filter\n-X G\nCOMMIT\n'], '*nat\n-D P -j A\n-X A\n-D P -j B\n-X B\nCOMMIT\n*filter\n-X F\n-X G\nCOMMIT\n'],
    [['*filter\n-X F\nCOMMIT\n', '*nat\n-X A\nCOMMIT\n*mangle\n-X M\nCOMMIT\n'], '*filter\n-X F\nCOMMIT\n*nat\n-X A\nCOMMIT\n*mangle\n-X M\nCOMMIT\n'],
  ])('%j', (scripts, want) => expect(mergeByTable(scripts)).toBe(want));
});

describe('RestoreStream', () => {
  it('applies many scripts through one process, each resolved after its own commit', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn });
    await Promise.all([1, 2, 3, 4].map((i) => s.apply(ADD(i))));
    expect(t.procs).toHaveLength(1);
    // each script's block, then the acknowledgement block
    expect(t.procs[0]!.committed.map((b) => b[0])).toEqual([':C1 - [0:0]', '-S OUTPUT', ':C2 - [0:0]', '-S OUTPUT', ':C3 - [0:0]', '-S OUTPUT', ':C4 - [0:0]', '-S OUTPUT']);
  });

  it('a failing line rejects that script with the line counted within it; the next script starts a new process', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn });
    await s.apply(ADD(1)); // 4 lines + 3 of the acknowledgement
    const bad = s.apply('*nat\n-A C1 -j ACCEPT\n-A FAIL -j ACCEPT\nCOMMIT\n');
    const after = s.apply(ADD(2));
    await expect(bad).rejects.toThrow('iptables-restore --noflush --wait: iptables-restore: line 3 failed: No chain/target/match by that name.');
    await bad.catch((e: { command?: string }) => expect(e.command).toContain('-A FAIL'));
    await after;
    expect(t.procs).toHaveLength(2);
    expect(t.procs[1]!.committed[0]).toEqual([':C2 - [0:0]', '-A C2 -j ACCEPT']);
  });

  it('a failure in the acknowledgement block itself: the script had committed', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn });
    await s.apply(ADD(1));
    // the fake fails lines with FAIL: from now on the acknowledgement's listing fails, after the commit
    const proc = t.procs[0]!;
    const w = proc.write.bind(proc);
    proc.write = (text) => w(text.replace('-S OUTPUT', '-S FAIL'));
    await expect(s.apply(ADD(2))).resolves.toEqual([]);
    expect(proc.committed.at(-1)).toEqual([':C2 - [0:0]', '-A C2 -j ACCEPT']);
  });

  it('without merge (the additions\' process), queued scripts go one by one, in order', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn });
    const first = s.apply(ADD(1));
    const removal = s.apply('*nat\n-X R1\nCOMMIT\n');
    const add = s.apply(ADD(2));
    await Promise.all([first, removal, add]);
    expect(t.procs[0]!.committed.filter((b) => b[0] !== '-S OUTPUT').map((b) => b[0])).toEqual([':C1 - [0:0]', '-X R1', ':C2 - [0:0]']);
  });

  it('no answer: the process is killed, the script fails naming the wait, the next one gets a new process', async () => {
    const t = fakeTool({ hang: true });
    const s = new RestoreStream({ command: 'ip6tables-restore', spawn: t.spawn, timeoutMs: 50 });
    await expect(s.apply(ADD(1))).rejects.toThrow('ip6tables-restore --noflush --wait: no answer in 0.05 s (killed it)');
    await expect(s.apply(ADD(2))).rejects.toThrow(/no answer/);
    expect(t.procs).toHaveLength(2);
  });

  it('a tool that cannot start (stdbuf missing) fails the script with the reason', async () => {
    const t = fakeTool({ startError: true });
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn });
    await expect(s.apply('')).rejects.toThrow('cannot start stdbuf iptables-restore: spawn stdbuf ENOENT');
  });

  it('close() lets queued scripts finish, ends the process and refuses later ones', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn });
    const a = s.apply(ADD(1));
    const b = s.apply('*nat\n-X C1\nCOMMIT\n');
    await s.close();
    await Promise.all([a, b]);
    expect(t.procs[0]!.ended).toBe(true);
    await expect(s.apply(ADD(3))).rejects.toThrow(/stopped/);
  });

  it('removals queued behind a change go as one transaction per table', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn, merge: true });
    const first = s.apply(ADD(1));
    const removals = [1, 2, 3].map((i) => s.apply(`*nat\n-X R${i}\nCOMMIT\n*filter\n-X F${i}\nCOMMIT\n`));
    await Promise.all([first, ...removals]);
    expect(t.procs[0]!.committed.filter((b) => b[0] !== '-S OUTPUT')).toEqual([[':C1 - [0:0]', '-A C1 -j ACCEPT'], ['-X R1', '-X R2', '-X R3'], ['-X F1', '-X F2', '-X F3']]);
  });

  it('a merged removal that fails is applied script by script: only the bad one fails', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn, merge: true });
    const first = s.apply(ADD(1));
    const ok1 = s.apply('*nat\n-X R1\nCOMMIT\n');
    const bad = s.apply('*nat\n-X FAIL\nCOMMIT\n');
    const ok2 = s.apply('*nat\n-X R2\nCOMMIT\n');
    await first;
    await expect(bad).rejects.toThrow('line 2 failed');
    await Promise.all([ok1, ok2]);
    const all = t.procs.flatMap((p) => p.committed).filter((b) => b[0] !== '-S OUTPUT');
    expect(all).toEqual([[':C1 - [0:0]', '-A C1 -j ACCEPT'], ['-X R1'], ['-X R2']]);
  });

  it('resolves with what the script\'s own listings printed, not the acknowledgement\'s rules or iptables\' notes', async () => {
    const t = fakeTool();
    const s = new RestoreStream({ command: 'iptables-restore', spawn: t.spawn });
    expect(await s.apply('*nat\n-S PREROUTING\n:C1 - [0:0]\nCOMMIT\n')).toEqual(['-P PREROUTING ACCEPT', '-A PREROUTING -j FTPPROXY-PREROUTING']);
    expect(await s.apply(ADD(2))).toEqual([]);
  });
});
