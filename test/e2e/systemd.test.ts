// The daemon as a Type=notify systemd service: READY=1 once it listens and its firewall objects exist,
// STATUS= with the live session count, RELOADING=1/READY=1 around SIGUSR1, STOPPING=1; and the unit's
// ExecReload, which checks the flags file's policy before it signals, so a broken policy fails the reload.
// The notify socket is a real AF_UNIX datagram socket (Python's; Node has none) in the firewall namespace.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, EXAMPLES, Lab, type ProxyProcess, requireLab, ROOT } from './lab.js';

const UNIT = `${ROOT}scripts/ftp-proxy.service`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

beforeAll(requireLab);

describe('Type=notify', () => {
  let lab: Lab;
  let proxy: ProxyProcess;
  let rx: ChildProcess;
  const got: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ftpp-notify-'));
  const sock = join(dir, 'notify');
  const policy = join(dir, 'policy.conf');

  const waitGot = async (re: RegExp, from = 0, ms = 10_000): Promise<number> => {
    const end = Date.now() + ms;
    for (;;) {
      const i = got.findIndex((m, k) => k >= from && re.test(m));
      if (i >= 0) return i;
      if (Date.now() > end) throw new Error(`no ${re} from the daemon; got ${JSON.stringify(got)}\n${proxy?.log}`);
      await sleep(50);
    }
  };

  beforeAll(async () => {
    const py = await execa('sh', ['-c', 'command -v python3'], { reject: false });
    if (py.exitCode !== 0) throw new Error('the sd_notify test needs python3 (its AF_UNIX datagram socket): apt-get install python3');
    writeFileSync(policy, 'command * accept\n');
    lab = await Lab.up('forward');
    await lab.loadRuleset(`${EXAMPLES}forward-redirect.nft`);
    rx = lab.spawn('fw', ['python3', '-c', RECEIVER, sock]);
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      rx.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line === 'ready') resolve();
          else got.push(JSON.parse(line) as string);
        }
      });
      rx.on('exit', () => reject(new Error('the notify receiver exited')));
    });
  });
  afterAll(async () => {
    await lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('READY=1 comes once the daemon listens and its firewall table exists, with STATUS=0 sessions and MAINPID', async () => {
    proxy = await lab.proxy(['-D6', '-f', policy], { NOTIFY_SOCKET: sock });
    const i = await waitGot(/^READY=1\n/);
    expect(got[i]).toBe(`READY=1\nSTATUS=0 sessions\nMAINPID=${proxy.pid}`);
    expect(await lab.tableExists()).toBe(true);
    // Nothing before READY: systemd would take a STATUS= for a sign of life, not of readiness.
    expect(got.slice(0, i)).toEqual([]);
  });

  it('STATUS= follows the live session count', async () => {
    const from = got.length;
    const holder = lab.rawSpawn(['sessions', lab.target, '1']);
    try {
      await waitGot(/^STATUS=1 session$/, from);
    } finally {
      holder.kill('SIGKILL');
    }
    await waitGot(/^STATUS=0 sessions$/, from);
  });

  it('SIGUSR1: RELOADING=1 (with MONOTONIC_USEC), then READY=1', async () => {
    const from = got.length;
    process.kill(proxy.pid, 'SIGUSR1');
    const r = await waitGot(/^RELOADING=1\nMONOTONIC_USEC=\d+$/, from);
    await waitGot(/^READY=1\n/, r + 1);
    await proxy.waitFor(/policy .* reloaded/);
  });

  it('SIGTERM: STOPPING=1, and the daemon exits 0', async () => {
    const from = got.length;
    expect(await proxy.signal('SIGTERM')).toBe(0);
    await waitGot(/^STOPPING=1$/, from);
  });
});

describe('the unit file', () => {
  /** Every Key=value line of the unit, in order (ExecReload may repeat). */
  const lines = (): [string, string][] =>
    readFileSync(UNIT, 'utf8')
      .split('\n')
      .map((l) => /^(\w+)=(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!]);

  it('is Type=notify with its flags in an EnvironmentFile, and checks before it reloads', () => {
    const l = lines();
    expect(l).toContainEqual(['Type', 'notify']);
    expect(l).toContainEqual(['EnvironmentFile', '-/etc/ftp-proxy/ftp-proxy.conf']);
    expect(l).toContainEqual(['ExecStart', '/usr/local/bin/ftp-proxy -d $FTP_PROXY_FLAGS']);
    expect(l.filter(([k]) => k === 'ExecReload').map(([, v]) => v)).toEqual([
      '/usr/local/bin/ftp-proxy --check-config $FTP_PROXY_FLAGS',
      '/bin/kill -USR1 $MAINPID',
    ]);
    expect(readFileSync(`${ROOT}scripts/ftp-proxy.conf`, 'utf8')).toMatch(/^FTP_PROXY_FLAGS=""$/m);
  });

  it.each([
    ['a broken policy fails the reload', 'command DELE frobnicate\n', 1],
    ['a good one passes it on to the signal', 'command DELE reject\n', 0],
  ])('ExecReload as systemd runs it: %s', async (_what, text, code) => {
    const dir = mkdtempSync(join(tmpdir(), 'ftpp-reload-'));
    try {
      const pol = join(dir, 'policy.conf');
      writeFileSync(pol, text);
      const flags = `-D6 -f ${pol}`;
      // systemd splits an unquoted $VAR on white space; the first ExecReload must succeed for the next.
      const first = lines().find(([k]) => k === 'ExecReload')![1].split(' ');
      const argv = first.flatMap((w) => (w === '$FTP_PROXY_FLAGS' ? flags.split(' ') : [w]));
      expect(argv[0]).toBe('/usr/local/bin/ftp-proxy');
      const r = await execa(process.execPath, [CLI, ...argv.slice(1)], { reject: false });
      expect(r.exitCode).toBe(code);
      if (code) expect(r.stderr).toMatch(/policy\.conf:1: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
