// Instance identity (src/firewall/instance.ts): a random id, held as an abstract unix socket while the
// daemon runs; another instance proves it dead only by binding that name itself.
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Instance, INSTANCE_ID, instanceAlive, livenessName, newInstanceId } from '../../src/firewall/instance.js';

describe('instance identity', () => {
  it('draws 8 hex digits', () => {
    for (let i = 0; i < 20; i++) expect(newInstanceId()).toMatch(INSTANCE_ID);
  });

  it('names an abstract socket on Linux, a socket file elsewhere', () => {
    expect(livenessName('4a3b2c1d', 'linux')).toBe('\0ftp-proxy/4a3b2c1d');
    expect(livenessName('4a3b2c1d', 'openbsd', '/var/run')).toBe('/var/run/ftp-proxy.4a3b2c1d.sock');
  });

  it('alive while claimed, dead (provably) once released', async () => {
    const i = new Instance();
    expect(await instanceAlive(i.id)).toBe(false);
    await i.claim();
    expect(await instanceAlive(i.id)).toBe(true);
    expect(await instanceAlive(i.id)).toBe(true); // the test binding does not take the name away
    i.release();
    expect(await instanceAlive(i.id)).toBe(false);
  });

  it('what is not an id is never proven dead', async () => {
    expect(await instanceAlive('4242')).toBe(true);
    expect(await instanceAlive('../../x')).toBe(true);
  });

  it('draws again when its name is taken (EADDRINUSE)', async () => {
    const taken = newInstanceId();
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(livenessName(taken), r));
    const ids = [taken, newInstanceId()];
    const i = new Instance(() => ids.shift()!);
    try {
      await i.claim();
      expect(i.id).not.toBe(taken);
      expect(await instanceAlive(i.id)).toBe(true);
    } finally {
      i.release();
      squatter.close();
    }
  });
});
