// sd_notify datagrams, received by a real AF_UNIX datagram socket (Python's: Node has none).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { notifySockaddr, SdNotify } from '../../src/sd-notify.js';

describe('notifySockaddr', () => {
  it.each([
    ['/run/systemd/notify', [1, 0, ...Buffer.from('/run/systemd/notify'), 0]],
    ['@/org/freedesktop/systemd1/notify/1', [1, 0, 0, ...Buffer.from('/org/freedesktop/systemd1/notify/1')]],
  ])('%s', (value, bytes) => {
    expect([...notifySockaddr(value)!]).toEqual(bytes);
  });

  it.each([[undefined], [''], ['relative/path'], [`/${'x'.repeat(120)}`]])('%s: none', (value) => {
    expect(notifySockaddr(value)).toBeNull();
  });
});

/** A datagram socket at `addr` (a path, or "@name" for an abstract one) that prints each datagram as JSON. */
function receiver(addr: string): Promise<{ p: ChildProcess; got: () => string[] }> {
  const py = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = sys.argv[1]
s.bind("\\0" + a[1:] if a.startswith("@") else a)
print("ready", flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;
  const p = spawn('python3', ['-c', py, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  return new Promise((resolve, reject) => {
    p.on('error', reject);
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (l === 'ready') resolve({ p, got: () => lines });
        else lines.push(JSON.parse(l) as string);
      }
    });
  });
}

const until = async (f: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe('SdNotify', () => {
  const procs: ChildProcess[] = [];
  const dirs: string[] = [];
  afterEach(() => {
    for (const p of procs.splice(0)) p.kill();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it.each([['path'], ['abstract']])('sends READY, STATUS (only when changed), RELOADING with MONOTONIC_USEC, STOPPING to a %s socket', async (kind) => {
    const dir = mkdtempSync(join(tmpdir(), 'sdn-'));
    dirs.push(dir);
    const addr = kind === 'path' ? join(dir, 'notify') : `@ftp-proxy-test-${process.pid}-${Date.now()}`;
    const r = await receiver(addr);
    procs.push(r.p);
    const n = new SdNotify({ NOTIFY_SOCKET: addr });
    expect(n.active).toBe(true);
    n.ready('0 sessions');
    n.status('0 sessions');
    n.status('1 session');
    n.reloading();
    n.ready();
    n.stopping();
    await until(() => r.got().length >= 5);
    n.close();
    const got = r.got();
    expect(got[0]).toBe(`READY=1\nSTATUS=0 sessions\nMAINPID=${process.pid}`);
    expect(got[1]).toBe('STATUS=1 session');
    expect(got[2]).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    expect(got[3]).toBe(`READY=1\nMAINPID=${process.pid}`);
    expect(got[4]).toBe('STOPPING=1');
    expect(n.failed).toBe(0);
  });

  it('without NOTIFY_SOCKET it sends nothing and fails nothing', () => {
    const n = new SdNotify({});
    expect(n.active).toBe(false);
    expect(n.send('READY=1')).toBe(false);
    expect(n.failed).toBe(0);
  });

  it('a socket nobody listens on is counted, never thrown', () => {
    const n = new SdNotify({ NOTIFY_SOCKET: `/nonexistent-${process.pid}/notify` });
    expect(n.send('READY=1')).toBe(false);
    expect(n.failed).toBe(1);
  });
});
