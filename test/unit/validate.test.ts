// --check-config runs the daemon's own start-up validation (src/validate.ts): exit 1 exactly where
// start would fail, with the words start would print; and every problem at once.
import { describe, expect, it } from 'vitest';
import { type Config, parseCommandLine } from '../../src/config.js';
import { Daemon } from '../../src/daemon.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { memoryLog } from '../../src/log.js';
import { checkWholeConfig } from '../../src/validate.js';

function config(args: string[]): Config {
  const out = parseCommandLine(['-d', ...args]);
  if (!('config' in out)) throw new Error(out.stderr);
  return out.config;
}

const noDns = async (): Promise<string> => {
  throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
};

describe('--check-config fails where start fails, with the same words', () => {
  it.each<[string[], string]>([
    [['-6', '-R', '10.0.0.1'], 'getaddrinfo: fixed server address 10.0.0.1: not an IPv6 address (-6)'],
    [['-6', '-a', '10.0.0.1'], 'getaddrinfo: fixed proxy address 10.0.0.1: not an IPv6 address (-6)'],
    [['-a', 'proxy.example'], 'getaddrinfo: fixed proxy address proxy.example: not a numeric address'],
    [['-p', 'no-such-service'], 'getaddrinfo listen address/port: no-such-service: unknown service'],
    [['-b', 'lan.example'], 'getaddrinfo listen address/port: lan.example: not a numeric address'],
    [['-R', '10.0.0.1', '-P', 'no-such-service'], 'getaddrinfo: fixed server port no-such-service: unknown service'],
    [['--backend', 'nftables', '-T', 'office'], 'tag "office": on Linux -T is a conntrack mark, a number 1-4294967295 (decimal or 0x hex)'],
    [['--backend', 'iptables', '-q', 'fast'], 'queue "fast": on Linux -q is a tc class id, major:minor in hex (for example 1:10)'],
    [['--user', 'no-such-user-of-ftp-proxy'], 'unknown user no-such-user-of-ftp-proxy'],
    [['--user', 'root'], '--user root: that is root'],
    [['-f', '/nonexistent/ftp-proxy.policy'], 'cannot read policy file /nonexistent/ftp-proxy.policy: ENOENT'],
  ])('%j', async (args, message) => {
    const c = config(args);
    const r = await checkWholeConfig(c);
    expect(r).toEqual({ exit: 1, stderr: `ftp-proxy: ${message}\n` });
    const daemon = new Daemon({ config: c, log: memoryLog().log, firewall: new FakeFirewall(), unprivileged: true });
    await expect(daemon.start()).rejects.toThrow(message);
    await daemon.stop();
  });

  it('a name -R cannot resolve, in gai_strerror words', async () => {
    const r = await checkWholeConfig(config(['-R', 'ftp.example.invalid']), { resolve: noDns });
    expect(r).toEqual({ exit: 1, stderr: 'ftp-proxy: getaddrinfo: fixed server address ftp.example.invalid: no address associated with name\n' });
  });

  it('says every problem at once, in start-up order', async () => {
    const r = await checkWholeConfig(config(['-6', '-R', '10.0.0.1', '-p', 'no-such-service', '-b', '127.0.0.1']));
    expect(r.exit).toBe(1);
    expect(r.stderr!.split('\n')).toEqual([
      'ftp-proxy: getaddrinfo: fixed server address 10.0.0.1: not an IPv6 address (-6)',
      'ftp-proxy: getaddrinfo listen address/port: no-such-service: unknown service',
      'ftp-proxy: getaddrinfo listen address/port: 127.0.0.1: not an IPv6 address (-6)',
      '',
    ]);
  });

  it('good flags pass, with what the policy does', async () => {
    expect(await checkWholeConfig(config(['-R', '10.0.0.1', '-P', 'ftp', '-b', '127.0.0.1']))).toEqual({
      exit: 0,
      stdout: 'ftp-proxy: flags OK; no policy file (-f): OpenBSD behaviour\n',
    });
  });
});
