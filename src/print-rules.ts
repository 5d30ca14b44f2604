// --print-rules: what a passive and an active negotiation would install with these flags, for one
// backend, as the exact text handed to nft, iptables-restore or pfctl. Pure: it changes nothing, and
// the addresses are documentation examples (RFC 5737 / RFC 3849), named in the header.
import type { Config } from './config.js';
import { activePinhole, describePinhole, type Owner, ownerTag, passivePinhole, type Pinhole, type RuleOptions, type SessionEnds } from './firewall/backend.js';
import type { BackendName } from './firewall/choose.js';
import * as ipt from './firewall/iptables.js';
import * as nft from './firewall/nftables.js';
import { pfRules, PF_ANCHOR } from './firewall/pf.js';

/** An example owner: "<pid>.<session id>" as every object carries it. */
export const EXAMPLE_OWNER: Owner = { pid: 4242, session: 1 };
const SERVER_PORT = 40001;
const CLIENT_PORT = 40002;
const PASSIVE_PORT = 50001;
const ACTIVE_PORT = 50002;

/** The example session: who is who, for the flags given (-6, -R, -a). */
export function exampleEnds(c: Config): SessionEnds {
  const v6 = c.ipv6;
  const fam = v6 ? 6 : 4;
  const source = c.sourceAddresses.find((a) => (a.includes(':') ? 6 : 4) === fam);
  const proxy = source ?? (v6 ? '2001:db8:2::1' : '203.0.113.1');
  const client = v6 ? '2001:db8:1::10' : '192.0.2.10';
  if (c.fixedServer) {
    // Reverse: the client dialled the proxy's own (listen) address; the proxy connects to -R.
    const listen = c.listenAddresses.find((a) => (a.includes(':') ? 6 : 4) === fam && a !== '127.0.0.1' && a !== '::1');
    return { family: fam, client, originalServer: listen ?? (v6 ? '2001:db8:2::21' : '203.0.113.21'), server: c.fixedServer, proxy };
  }
  const server = v6 ? '2001:db8:3::20' : '198.51.100.20';
  return { family: fam, client, originalServer: server, server, proxy };
}

function bytes(a: string, port: number): string {
  return [...a.split('.'), String(port >> 8), String(port & 255)].join(',');
}

export function printRules(c: Config, backend: BackendName, rules: RuleOptions, now = new Date()): string {
  const e = exampleEnds(c);
  const passive = passivePinhole(e, SERVER_PORT, PASSIVE_PORT);
  const activeCmd = c.ipv6 ? 'EPRT' : 'PORT';
  const active = activePinhole(e, CLIENT_PORT, ACTIVE_PORT, c.port20 && activeCmd === 'PORT');
  const owner = ownerTag(EXAMPLE_OWNER);
  const out: string[] = [];
  const mode = c.fixedServer ? `reverse proxy to ${c.fixedServer}` : 'forward proxy (intercepted connections)';
  out.push(
    `# ftp-proxy --print-rules: ${backend}, ${mode}, IPv${e.family}. Nothing was changed.`,
    `# Example session ${owner} (pid ${EXAMPLE_OWNER.pid}, session ${EXAMPLE_OWNER.session}): client ${e.client} dialled ${e.originalServer} port 21;`,
    `# the proxy reaches the server ${e.server} from ${e.proxy}. Real sessions use their own addresses, ports and owner.`,
    '',
  );
  const passiveSays =
    e.family === 4
      ? `the server replied "227 Entering Passive Mode (${bytes(e.server, SERVER_PORT)})"; the client is told "227 ... (${bytes(e.originalServer, PASSIVE_PORT)})"`
      : `the server replied "229 Entering Extended Passive Mode (|||${SERVER_PORT}|)"; the client is told "229 ... (|||${PASSIVE_PORT}|)"`;
  const activeSays =
    e.family === 4
      ? `the client sent "PORT ${bytes(e.client, CLIENT_PORT)}"; the server is told "PORT ${bytes(e.proxy, ACTIVE_PORT)}"`
      : `the client sent "EPRT |2|${e.client}|${CLIENT_PORT}|"; the server is told "EPRT |2|${e.proxy}|${ACTIVE_PORT}|"`;
  const cases: [string, string, Pinhole][] = [
    ['Passive', passiveSays, passive],
    ['Active', activeSays, active],
  ];
  switch (backend) {
    case 'nftables': {
      const chain = nft.variantChain(rules);
      const perPacket = nft.needsPerPacket(rules) ? { label: 127, present: false } : null;
      out.push(
        '# At start, once (idempotent: running it again repairs the table without touching live elements).',
        '# Loaded as one transaction; `nft list table inet ftp-proxy` shows it.',
        ...(perPacket ? ['# -vv/-q: the conntrack label is the highest one no other instance uses (127 here).'] : []),
        nft.tableScript(rules, perPacket).trimEnd(),
        '',
      );
      for (const [name, says, p] of cases) {
        out.push(
          `# ${name}: ${says}.`,
          `#   ${describePinhole(p)}`,
          `# One transaction; elements expire after ${rules.timeout}s unused, and the first SYN consumes the once-element:`,
          ...nft.addScript([p], owner, chain, rules.timeout),
          '',
        );
      }
      out.push('# When the session ends or negotiates again, one transaction removes them (add+delete cannot fail on an element already gone):');
      out.push(...nft.removeScript([active], chain), '');
      break;
    }
    case 'iptables': {
      const cmd = e.family === 6 ? 'ip6tables' : 'iptables';
      out.push(
        `# At start: parent chains and the jumps to them (${cmd}-restore --noflush), where missing:`,
        ...ipt.PARENTS.filter((p) => p.table !== 'mangle' || rules.queue !== undefined).map((p) => `#   *${p.table}  :${p.chain}  -I ${p.builtin} 1 -j ${p.chain}`),
        '',
      );
      let set: 'A' | 'B' = 'A';
      let seq = 1;
      for (const [name, says, p] of cases) {
        const r = ipt.pinholeRules([p], rules, EXAMPLE_OWNER, seq++, now);
        out.push(
          `# ${name}: ${says}.`,
          `#   ${describePinhole(p)}`,
          `# ${cmd}-restore --noflush (the rules stop matching at --datestop, ${rules.timeout}s from now, even if the proxy dies):`,
          ipt.addScript(EXAMPLE_OWNER, set, r, rules.queue !== undefined).trimEnd(),
          '',
        );
        if (set === 'B') {
          out.push('# ... and, after the reply has gone, the previous negotiation\'s chain set goes:', ipt.removeScript(EXAMPLE_OWNER, 'A', rules.queue !== undefined).trimEnd(), '');
        }
        set = 'B';
      }
      out.push('# When the session ends:', ipt.removeScript(EXAMPLE_OWNER, 'B', rules.queue !== undefined).trimEnd(), '');
      break;
    }
    case 'pf': {
      const anchor = `${PF_ANCHOR}/${owner}`;
      out.push(`# pf.conf needs: anchor "${PF_ANCHOR}/*" (see pf-examples/).`, '');
      for (const [name, says, p] of cases) {
        out.push(`# ${name}: ${says}.`, `#   ${describePinhole(p)}`, `# pfctl -a ${anchor} -f - (replaces the anchor's rules in one transaction):`, ...pfRules(p, rules), '');
      }
      out.push(`# When the session ends: pfctl -a ${anchor} -f - with an empty ruleset (pf drops the empty anchor).`, '');
      break;
    }
  }
  return out.join('\n');
}
