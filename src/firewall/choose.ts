// Which firewall backend, and its rule options from the flags.
import type { Config } from '../config.js';
import { StartupError } from '../errors.js';
import { LOG_INFO, LOG_WARNING } from '../levels.js';
import type { Log } from '../log.js';
import type { FirewallBackend, RuleOptions } from './backend.js';
import { createNftRunner } from './nft-runner.js';
import { NftablesBackend, parseMark, parseTcClass } from './nftables.js';

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

export async function createBackend(c: Config, log: Log): Promise<FirewallBackend> {
  const choice = c.backend === 'auto' ? 'nftables' : c.backend;
  switch (choice) {
    case 'nftables': {
      checkLinuxRuleOptions(c);
      const runner = createNftRunner();
      const b = new NftablesBackend({
        rules: ruleOptions(c),
        runner,
        warn: (m) => log.log(LOG_WARNING, m),
      });
      log.log(LOG_INFO, `firewall: nftables (table inet ftp-proxy, through ${runner.kind})`);
      return b;
    }
    default:
      throw new StartupError(`--backend ${choice}: not available in this version (nftables only)`);
  }
}
