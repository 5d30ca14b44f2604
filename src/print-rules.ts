// --print-rules: what a passive and an active negotiation would install with these flags, for one
// backend, as the exact text handed to nft, iptables-restore or pfctl. Pure: it changes nothing, and
// the addresses are documentation examples (RFC 5737 / RFC 3849), named in the header.
import type { Config } from './config.js';
import {
  activePinhole,
  describePinhole,
  localPinhole,
  type Owner,
  ownerTag,
  passivePinhole,
  passthroughPinhole,
  type Pinhole,
  type RuleOptions,
  type SessionEnds,
} from './firewall/backend.js';
import type { BackendName } from './firewall/backend.js';
import * as ipt from './firewall/iptables.js';
import * as nft from './firewall/nftables.js';
import { pfLocalRule, pfRules, PF_ANCHOR } from './firewall/pf.js';
import { format227, format229, formatEprt, formatPort, stripEol } from './ftp/port-args.js';
import type { DataMode } from './policy/parse.js';

/** An example owner: "<instance id>.<session id>" as every object carries it. */
export const EXAMPLE_OWNER: Owner = { instance: '4a3b2c1d', session: 1 };
/** The example pass-through session (tls_client passthrough), another session of the same instance. */
export const PASSTHROUGH_OWNER: Owner = { instance: '4a3b2c1d', session: 2 };
const SERVER_PORT = 40001;
const CLIENT_PORT = 40002;
const PASSIVE_PORT = 50001;
const ACTIVE_PORT = 50002;
/** data_mode active: the proxy's two listeners (client side, server side). */
const LISTEN_CLIENT = 41001;
const LISTEN_SERVER = 41002;

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

/** A negotiation: what was said, and the pinholes it installs (none: the proxy connects out itself). */
interface Case {
  name: string;
  says: string;
  pins: Pinhole[];
}

/**
 * The passive and the active negotiation for these flags; with a policy's data_mode, the forced one
 * (client PORT towards a passive server: no pinhole; client PASV towards an active server: two local
 * pinholes to the proxy's own listeners).
 */
function negotiations(c: Config, e: SessionEnds, dataMode: DataMode): Case[] {
  const v4 = e.family === 4;
  const pasv = v4 ? 'PASV' : 'EPSV';
  const port = v4 ? 'PORT' : 'EPRT';
  // The lines as the proxy writes them, without their CRLF.
  const addr = (a: string, p: number): string => stripEol(v4 ? formatPort(a, p) : formatEprt(6, a, p));
  const reply = (a: string, p: number): string => stripEol(v4 ? format227(a, p) : format229(p));
  // The proxy's address towards the client: its LAN side (forward), the address clients dial (reverse).
  const towardClient = c.fixedServer ? e.originalServer : v4 ? '192.0.2.1' : '2001:db8:1::1';
  const passive: Case =
    dataMode === 'active'
      ? {
          name: `Passive, forced active towards the server (data_mode active)`,
          says: `the client sent ${pasv}; the server is told "${addr(e.proxy, ACTIVE_PORT)}" and the client "${reply(e.originalServer, PASSIVE_PORT)}"; the proxy listens on both sides and joins the two connections`,
          pins: [
            localPinhole('client', e.family, e.client, e.originalServer, PASSIVE_PORT, towardClient, LISTEN_CLIENT),
            localPinhole('server', e.family, e.server, e.proxy, ACTIVE_PORT, e.proxy, LISTEN_SERVER),
          ],
        }
      : {
          name: 'Passive',
          says: `the server replied "${reply(e.server, SERVER_PORT)}"; the client is told "${reply(e.originalServer, PASSIVE_PORT)}"`,
          pins: [passivePinhole(e, SERVER_PORT, PASSIVE_PORT)],
        };
  const active: Case =
    dataMode === 'passive'
      ? {
          name: 'Active, forced passive towards the server (data_mode passive)',
          says: `the client sent "${addr(e.client, CLIENT_PORT)}"; the server is told ${pasv}; the proxy connects to the server's port and to the client's itself and joins the two connections: no pinhole, nothing in the firewall`,
          pins: [],
        }
      : {
          name: 'Active',
          says: `the client sent "${addr(e.client, CLIENT_PORT)}"; the server is told "${addr(e.proxy, ACTIVE_PORT)}"`,
          pins: [activePinhole(e, CLIENT_PORT, ACTIVE_PORT, c.port20 && port === 'PORT')],
        };
  return [passive, active];
}

/**
 * `passthrough`: the policy's tls_client passthrough range for this server (tls_passthrough_ports), to
 * show the session-lived range pinhole a pass-through session installs after the server's 234.
 */
export function printRules(
  c: Config,
  backend: BackendName,
  rules: RuleOptions,
  now = new Date(),
  dataMode: DataMode = 'keep',
  passthrough: { low: number; high: number } | null = null,
): string {
  const e = exampleEnds(c);
  const owner = ownerTag(EXAMPLE_OWNER);
  const out: string[] = [];
  const mode = c.fixedServer ? `reverse proxy to ${c.fixedServer}` : 'forward proxy (intercepted connections)';
  out.push(
    `# ftp-proxy --print-rules: ${backend}, ${mode}, IPv${e.family}${dataMode === 'keep' ? '' : `, data_mode ${dataMode}`}. Nothing was changed.`,
    `# Example session ${owner} (instance ${EXAMPLE_OWNER.instance}, random per daemon; session ${EXAMPLE_OWNER.session}): client ${e.client} dialled ${e.originalServer} port 21;`,
    `# the proxy reaches the server ${e.server} from ${e.proxy}. Real sessions use their own addresses, ports and owner.`,
    '',
  );
  const cases = negotiations(c, e, dataMode);
  const header = (k: Case): string[] => [`# ${k.name}: ${k.says}.`, ...k.pins.map((p) => `#   ${describePinhole(p)}${p.kind === 'local' ? ' (to the proxy itself, source kept)' : ''}`)];
  // The pinholes the session holds at its end: those of the last negotiation that installed any.
  const last = [...cases].reverse().find((k) => k.pins.length)?.pins ?? [];
  const range = passthrough ? passthroughPinhole(e, passthrough.low, passthrough.high) : null;
  const rangeOwner = ownerTag(PASSTHROUGH_OWNER);
  const rangeHeader = (): string[] => [
    `# Pass-through (tls_client passthrough), session ${rangeOwner}: the client sent AUTH TLS and the server replied 234; the proxy relays the TLS it cannot read`,
    `# and opens the server's passive range ${passthrough!.low}-${passthrough!.high} to this client for the whole session (any number of connections, the ports kept):`,
    `#   ${describePinhole(range!)}`,
  ];
  switch (backend) {
    case 'nftables': {
      const chain = nft.variantChain(rules);
      const perPacket = nft.needsPerPacket(rules) ? { label: nft.RANGE_LABEL - 1, present: false } : null;
      out.push(
        '# At start, once (idempotent: running it again repairs the table without touching live elements).',
        '# Loaded as one transaction; `nft list table inet ftp-proxy` shows it.',
        ...(perPacket ? [`# -vv/-q: the conntrack label is the highest one no other instance uses (${nft.RANGE_LABEL - 1} here; ${nft.RANGE_LABEL} marks tls_client passthrough ranges).`] : []),
        nft.tableScript(rules, perPacket).trimEnd(),
        '',
      );
      let held: Pinhole[] = [];
      for (const k of cases) {
        out.push(...header(k));
        if (k.pins.length) {
          out.push(
            `# One transaction${held.length ? " that first removes the previous negotiation's elements" : ''}; elements expire after ${rules.timeout}s unused, and the first SYN consumes the once-element:`,
            ...nft.removeScript(held, chain),
            ...nft.addScript(k.pins, owner, chain, rules.timeout),
          );
          held = k.pins;
        }
        out.push('');
      }
      out.push('# When the session ends or negotiates again, one transaction removes them (add+delete cannot fail on an element already gone):');
      out.push(...nft.removeScript(last, chain), '');
      if (range) {
        out.push(
          ...rangeHeader(),
          `# One transaction (no timeout, nothing consumed). The range chain gives the connections conntrack label ${nft.RANGE_LABEL}:`,
          `# a forward chain that drops by default needs \`ct label ${nft.RANGE_LABEL} accept\` (in forward mode nothing is translated for ct status dnat to see).`,
          ...nft.addScript([range], rangeOwner, chain, rules.timeout),
          '# When the session ends:',
          ...nft.removeScript([range], chain),
          '',
        );
      }
      break;
    }
    case 'iptables': {
      const cmd = e.family === 6 ? 'ip6tables' : 'iptables';
      const local = cases.some((k) => k.pins.some((p) => p.kind === 'local'));
      out.push(
        `# At start: parent chains and the jumps to them (${cmd}-restore --noflush), where missing:`,
        ...ipt.PARENTS.filter((p) => (p.table !== 'mangle' || rules.queue !== undefined) && (p.chain !== 'FTPPROXY-IN' || local)).map(
          (p) => `#   *${p.table}  -N ${p.chain}  -I ${p.builtin} 1 ${ipt.jumpArgs(p, rules.log === 2)}`,
        ),
        '',
      );
      const sets: { set: 'A' | 'B'; input: boolean }[] = [];
      const mangle = rules.queue !== undefined;
      let seq = 1;
      for (const k of cases) {
        out.push(...header(k));
        if (k.pins.length) {
          const set: 'A' | 'B' = sets.at(-1)?.set === 'A' ? 'B' : 'A';
          const r = ipt.pinholeRules(k.pins, rules, EXAMPLE_OWNER, seq++, now);
          out.push(
            `# ${cmd}-restore --noflush (the rules stop matching at --datestop, ${rules.timeout}s from now, even if the proxy dies):`,
            ipt.addScript(EXAMPLE_OWNER, set, r, mangle).trimEnd(),
          );
          const prev = sets.at(-1);
          if (prev) {
            out.push('', "# ... and, after the reply has gone, the previous negotiation's chain set goes:", ipt.removeScript(EXAMPLE_OWNER, prev.set, mangle, prev.input).trimEnd());
          }
          sets.push({ set, input: r.IN.length > 0 });
        }
        out.push('');
      }
      const end = sets.at(-1);
      if (end) out.push('# When the session ends:', ipt.removeScript(EXAMPLE_OWNER, end.set, mangle, end.input).trimEnd(), '');
      if (range) {
        out.push(
          ...rangeHeader(),
          `# ${cmd}-restore --noflush (no single-use match, no --datestop: the chains go with the session):`,
          ipt.addScript(PASSTHROUGH_OWNER, 'A', ipt.pinholeRules([range], rules, PASSTHROUGH_OWNER, seq, now), mangle).trimEnd(),
          '# When the session ends:',
          ipt.removeScript(PASSTHROUGH_OWNER, 'A', mangle, false).trimEnd(),
          '',
        );
      }
      break;
    }
    case 'pf': {
      const anchor = `${PF_ANCHOR}/${owner}`;
      out.push(`# pf.conf needs: anchor "${PF_ANCHOR}/*" (see pf-examples/).`, '');
      for (const k of cases) {
        out.push(...header(k));
        if (k.pins.length) {
          out.push(
            `# pfctl -a ${anchor} -f - (replaces the anchor's rules in one transaction):`,
            ...k.pins.flatMap((p) => (p.kind === 'local' ? [pfLocalRule(p, rules)] : pfRules(p, rules))),
          );
        }
        out.push('');
      }
      out.push(`# When the session ends: pfctl -a ${anchor} -f - with an empty ruleset (pf drops the empty anchor).`, '');
      if (range) {
        const rangeAnchor = `${PF_ANCHOR}/${rangeOwner}`;
        out.push(
          ...rangeHeader(),
          `# pfctl -a ${rangeAnchor} -f - (for the session; the anchor is emptied when it ends):`,
          ...pfRules(range, rules),
          '',
        );
      }
      break;
    }
  }
  return out.join('\n');
}
