// Session slots cannot be hogged (issue 11, item 9): a client that does not log in within
// --login-timeout gets a 421 and is closed; one client address holds at most --max-per-client sessions
// (default a quarter of -m), the refusal a 421, logged once per address and minute.
import { afterEach, describe, expect, it } from 'vitest';
import { defaultMaxPerClient } from '../../src/daemon.js';
import { daemonRig, type DaemonRig } from '../helpers/daemon-rig.js';

let rig: DaemonRig | null = null;
afterEach(async () => {
  await rig?.close();
  rig = null;
});

describe('--login-timeout', () => {
  it('a client silent after the greeting gets a 421 and is closed; one that logged in stays', async () => {
    rig = await daemonRig(['--login-timeout', '1']);
    const silent = await rig.connect();
    const user = await rig.loggedIn('127.0.0.6');
    expect(await silent.next()).toBe('220 scripted ready\r\n');
    const t = Date.now();
    expect(await silent.next(3000)).toBe('421 Login timeout (1 seconds): closing control connection.\r\n');
    expect(Date.now() - t).toBeGreaterThan(700);
    expect(await silent.waitClosed(3000)).toBe(true);
    expect(rig.lines.some((l) => /#1 no login within 1 s, closing$/.test(l))).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    user.send('NOOP\r\n');
    expect(await user.next()).toBe('200 NOOP ok\r\n');
  });

  it('USER alone (331) does not count as logged in', async () => {
    rig = await daemonRig(['--login-timeout', '1']);
    const c = await rig.connect();
    expect(await c.next()).toBe('220 scripted ready\r\n');
    c.send('USER lab\r\n');
    expect(await c.next()).toBe('331 password\r\n');
    expect(await c.next(3000)).toMatch(/^421 Login timeout/);
  });

  it('0: no limit', async () => {
    rig = await daemonRig(['--login-timeout', '0']);
    const c = await rig.connect();
    expect(await c.next()).toBe('220 scripted ready\r\n');
    await expect(c.next(1500)).rejects.toThrow(/no line within/);
  });
});

describe('--max-per-client', () => {
  it('the default is a quarter of -m, at least 1', () => {
    expect(defaultMaxPerClient(100)).toBe(25);
    expect(defaultMaxPerClient(500)).toBe(125);
    expect(defaultMaxPerClient(7)).toBe(1);
    expect(defaultMaxPerClient(1)).toBe(1);
  });

  it('-m 8: the third session from one address gets a 421 (logged once); other addresses still get in; a slot freed is usable', async () => {
    rig = await daemonRig(['-m', '8']);
    const a = await rig.loggedIn();
    await rig.loggedIn();
    const refused: string[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await rig.connect();
      refused.push((await c.next())!);
      expect(await c.waitClosed(3000)).toBe(true);
    }
    expect(refused).toEqual(Array(3).fill('421 Too many connections from your address (limit 2), try again later.\r\n'));
    const logged = rig.lines.filter((l) => /per-client limit/.test(l));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/per-client limit \(2\) reached, refusing connections from 127\.0\.0\.4$/);
    await rig.loggedIn('127.0.0.6');
    a.send('QUIT\r\n');
    expect(await a.next()).toBe('221 Goodbye.\r\n');
    await a.waitClosed();
    await new Promise((r) => setTimeout(r, 100));
    await rig.loggedIn(); // the address has a slot again
  });

  it('--max-per-client 1', async () => {
    rig = await daemonRig(['--max-per-client', '1']);
    await rig.loggedIn();
    const c = await rig.connect();
    expect(await c.next()).toBe('421 Too many connections from your address (limit 1), try again later.\r\n');
  });
});
