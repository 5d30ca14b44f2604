// What a running instance tells `ftp-proxy status` about its sessions: the answer on its abstract name,
// and the line status prints for each.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { describeSession, readSessions, serveSessions, type SessionInfo } from '../../src/status-sessions.js';

const info = (o: Partial<SessionInfo>): SessionInfo => ({ session: 7, client: '192.168.1.10', server: '198.51.100.21', tls: { client: false, server: false }, data: 'none', ...o });

describe('describeSession', () => {
  it.each([
    [info({ tls: { client: true, server: true }, data: 'relay' }), 'session 7: 192.168.1.10 -> 198.51.100.21, TLS client and server legs, data through the TLS relay (PROT P)'],
    [info({ tls: { client: true, server: false }, data: 'kernel' }), 'session 7: 192.168.1.10 -> 198.51.100.21, TLS client leg, plain server leg, data through a kernel pinhole'],
    [info({ tls: { client: false, server: true }, data: 'relay' }), 'session 7: 192.168.1.10 -> 198.51.100.21, plain client leg, TLS server leg, data through the TLS relay (PROT P)'],
    [info({ data: 'join' }), 'session 7: 192.168.1.10 -> 198.51.100.21, plain, data joined by the proxy (data_mode)'],
    [info({ data: 'passthrough' }), 'session 7: 192.168.1.10 -> 198.51.100.21, TLS end to end (not decrypted), TLS passed through, data through a range pinhole'],
    [info({}), 'session 7: 192.168.1.10 -> 198.51.100.21, plain, no data connection yet'],
  ])('%o', (s, line) => {
    expect(describeSession(s)).toBe(line);
  });
});

describe('the sessions socket', () => {
  it('answers with the snapshot of the moment, once per connection', async () => {
    const id = randomBytes(4).toString('hex');
    let n = 0;
    const server = await serveSessions(id, () => [info({ session: ++n })]);
    try {
      expect(await readSessions(id)).toEqual([info({ session: 1 })]);
      expect(await readSessions(id)).toEqual([info({ session: 2 })]);
    } finally {
      server.close();
    }
  });

  it('an instance that does not answer (an older version, or gone) reads as null, quickly', async () => {
    const t = Date.now();
    expect(await readSessions(randomBytes(4).toString('hex'))).toBeNull();
    expect(Date.now() - t).toBeLessThan(1000);
  });
});
