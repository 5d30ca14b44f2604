// Backend choice: auto-detection against fake hosts, and what each explicit --backend builds.
import { describe, expect, it } from 'vitest';
import { parseCommandLine, type Config } from '../../src/config.js';
import { checkLinuxRuleOptions, createBackend, detectBackend, type HostProbe } from '../../src/choose-backend.js';
import { memoryLog } from '../../src/log.js';

function host(platform: string, nft: boolean, ipt: boolean): HostProbe & { asked: string[] } {
  const asked: string[] = [];
  return {
    platform,
    asked,
    nftables: async () => {
      asked.push('nftables');
      return nft;
    },
    iptables: async () => {
      asked.push('iptables');
      return ipt;
    },
  };
}

function config(args: string[]): Config {
  const r = parseCommandLine(args);
  if (!('config' in r)) throw new Error(r.stderr);
  return r.config;
}

describe('detectBackend', () => {
  it.each([
    ['linux', true, true, 'nftables'],
    ['linux', true, false, 'nftables'],
    ['linux', false, true, 'iptables'],
    ['openbsd', false, false, 'pf'],
  ] as const)('%s with nft=%s iptables=%s -> %s', async (platform, nft, ipt, expected) => {
    expect((await detectBackend(host(platform, nft, ipt))).name).toBe(expected);
  });

  it('does not ask iptables when nftables answers, and asks neither on OpenBSD', async () => {
    const h = host('linux', true, true);
    await detectBackend(h);
    expect(h.asked).toEqual(['nftables']);
    const b = host('openbsd', true, true);
    await detectBackend(b);
    expect(b.asked).toEqual([]);
  });

  it('fails clearly on a Linux host with neither', async () => {
    await expect(detectBackend(host('linux', false, false))).rejects.toThrow(
      /^no usable firewall: neither nftables \(libnftables or nft\) nor iptables answered; install nftables/,
    );
  });

  it.each(['darwin', 'freebsd', 'netbsd'])('fails on %s, which has no backend (FreeBSD pf speaks an older syntax)', async (platform) => {
    await expect(detectBackend(host(platform, true, true))).rejects.toThrow(new RegExp(`no firewall backend for ${platform}`));
  });
});

describe('createBackend', () => {
  it('logs the automatic choice at INFO and builds that backend', async () => {
    const { log, lines } = memoryLog(6);
    const b = await createBackend(config([]), log, host('linux', false, true));
    expect(b.name).toBe('iptables');
    expect(lines).toContain('firewall: iptables chosen automatically (nftables did not answer, iptables did)');
  });

  it.each([
    ['nftables', 'nftables'],
    ['iptables', 'iptables'],
    ['pf', 'pf'],
  ])('--backend %s builds %s without probing', async (choice, name) => {
    const h = host('linux', false, false);
    const b = await createBackend(config(['--backend', choice]), memoryLog(6).log, h);
    expect(b.name).toBe(name);
    expect(h.asked).toEqual([]);
  });

  it('pf takes tag and queue names; the Linux backends want a mark and a tc class', async () => {
    await expect(createBackend(config(['--backend', 'pf', '-T', 'FTPDATA', '-q', 'ftpq']), memoryLog(6).log)).resolves.toMatchObject({ name: 'pf' });
    await expect(createBackend(config(['--backend', 'nftables', '-T', 'FTPDATA']), memoryLog(6).log)).rejects.toThrow(/conntrack mark/);
    await expect(createBackend(config(['--backend', 'iptables', '-q', 'ftpq']), memoryLog(6).log)).rejects.toThrow(/tc class id/);
    expect(() => checkLinuxRuleOptions(config(['-T', '0x2a', '-q', '1:10']))).not.toThrow();
  });
});
