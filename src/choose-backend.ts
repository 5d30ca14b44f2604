// Which firewall backend, and its rule options from the flags. It reads the Config and logs, so it
// lives outside firewall/, whose modules know nothing of either.
import { execa } from 'execa';
import type { Config } from './config.js';
import { StartupError } from './errors.js';
import { LOG_INFO, LOG_WARNING } from './levels.js';
import type { Log } from './log.js';
import { type BackendName, type FirewallBackend, parseMark, parseTcClass, type RuleOptions } from './firewall/backend.js';
import { IptablesBackend } from './firewall/iptables.js';
import { createNftRunner, type NftRunner } from './firewall/nft-runner.js';
import { NftablesBackend } from './firewall/nftables.js';
import { defaultNetlinkSys } from './firewall/nfnl/sys.js';
import { PfBackend } from './firewall/pf.js';

export type { BackendName };

export function ruleOptions(c: Config): RuleOptions {
  const o: RuleOptions = { log: c.verbose, timeout: c.pinholeTimeout };
  if (c.tag !== undefined) o.tag = c.tag;
  if (c.queue !== undefined) o.queue = c.queue;
  return o;
}

/** -T and -q mean pf names; on Linux they must be a conntrack mark and a tc class. */
export function checkLinuxRuleOptions(c: Config): void {
  if (c.tag !== undefined && parseMark(c.tag) === null) {
    throw new StartupError(`tag "${c.tag}": on Linux -T is a conntrack mark, a number 1-4294967295 (decimal or 0x hex)`);
  }
  if (c.queue !== undefined && parseTcClass(c.queue) === null) {
    throw new StartupError(`queue "${c.queue}": on Linux -q is a tc class id, major:minor in hex (for example 1:10)`);
  }
}

/** What auto-detection asks of the host. */
export interface HostProbe {
  platform: string;
  /** libnftables (or the nft command) can list the ruleset. */
  nftables(): Promise<boolean>;
  /** iptables can list its rules. */
  iptables(): Promise<boolean>;
}

/**
 * pf on OpenBSD; on Linux nftables when it answers, else iptables (a host whose iptables is iptables-nft
 * also answers to nft: the same kernel, and nft's deletions are far cheaper). FreeBSD's and NetBSD's pf
 * speak an older rule syntax (rdr/nat rules, no rdr-to), which the pf backend does not write.
 */
export async function detectBackend(p: HostProbe): Promise<{ name: BackendName; why: string }> {
  if (p.platform === 'openbsd') return { name: 'pf', why: 'OpenBSD has pf' };
  if (p.platform !== 'linux') {
    throw new StartupError(`no firewall backend for ${p.platform}: the pf backend writes OpenBSD's pf syntax; on Linux use nftables or iptables`);
  }
  if (await p.nftables()) return { name: 'nftables', why: 'nftables answered' };
  if (await p.iptables()) return { name: 'iptables', why: 'nftables did not answer, iptables did' };
  throw new StartupError(
    'no usable firewall: neither nftables (libnftables or nft) nor iptables answered; install nftables (apt-get install nftables) or choose one with --backend',
  );
}

/** The real host: run a harmless listing with each tool. */
export function hostProbe(iptablesCmd = process.env.FTP_PROXY_IPTABLES ?? 'iptables'): HostProbe {
  return {
    platform: process.platform,
    async nftables() {
      let runner: NftRunner | null = null;
      try {
        runner = createNftRunner();
        await runner.run('list tables\n');
        return true;
      } catch {
        return false;
      } finally {
        runner?.close();
      }
    },
    async iptables() {
      const r = await execa(iptablesCmd, ['-w', '-S', 'FORWARD'], { reject: false }).catch(() => null);
      return r?.exitCode === 0;
    },
  };
}

export async function createBackend(c: Config, log: Log, probe: HostProbe = hostProbe()): Promise<FirewallBackend> {
  let name: BackendName;
  if (c.backend === 'auto') {
    const d = await detectBackend(probe);
    name = d.name;
    log.log(LOG_INFO, `firewall: ${name} chosen automatically (${d.why})`);
  } else {
    name = c.backend;
  }
  const warn = (m: string): void => log.log(LOG_WARNING, m);
  switch (name) {
    case 'nftables': {
      checkLinuxRuleOptions(c);
      let runner: NftRunner;
      try {
        runner = createNftRunner();
      } catch (e) {
        throw new StartupError(`nftables: cannot load libnftables (${e instanceof Error ? e.message : String(e)}); unset FTP_PROXY_NFT to fall back to the nft command`);
      }
      log.log(LOG_INFO, `firewall: nftables (table inet ftp-proxy, through ${runner.kind})`);
      // FTP_PROXY_NFT names the one way to the kernel; unset, element changes take the netlink fast path.
      const netlink = process.env.FTP_PROXY_NFT ? undefined : (defaultNetlinkSys() ?? undefined);
      return new NftablesBackend({ rules: ruleOptions(c), runner, warn, info: (m) => log.log(LOG_INFO, m), ...(netlink ? { netlink } : {}) });
    }
    case 'iptables': {
      checkLinuxRuleOptions(c);
      const command = process.env.FTP_PROXY_IPTABLES ?? 'iptables';
      // FTP_PROXY_IPTABLES_RESTORE=process: a new iptables-restore per change (the bench's baseline).
      const keep = process.env.FTP_PROXY_IPTABLES_RESTORE !== 'process';
      log.log(LOG_INFO, `firewall: iptables (chains FTPPROXY-*, through ${keep ? 'a kept ' : ''}${command}-restore${keep ? ' per family for additions and one for removals' : ''})`);
      return new IptablesBackend({ rules: ruleOptions(c), command, warn, keep });
    }
    case 'pf':
      log.log(LOG_INFO, 'firewall: pf (anchors ftp-proxy/<instance>.<session>, through pfctl)');
      return new PfBackend({ rules: ruleOptions(c), warn });
  }
}
