// The rulesets of the latency and scale parts: a shipped example as it is, plus a path to one more server
// address (HELPER) that the proxy does not intercept and the kernel's FTP helper serves instead. Both paths
// then run in one ruleset, so their negotiations can be interleaved and compared on a noisy machine.
//   node bench/rulesets/combine.mjs nft|ipt FILE ADDRESS   prints the combined ruleset

/** Apply regex edits to a ruleset; an edit that finds nothing means the example changed: say so. */
function edit(text, file, edits) {
  let s = text;
  for (const [re, fn, what] of edits) {
    if (!re.test(s)) throw new Error(`bench: ${file} changed, cannot add ${what}`);
    s = s.replace(re, fn);
  }
  return s;
}

/** nftables-examples/forward-redirect.nft + the helper's path to HELPER:21. */
export function withHelperPathNft(text, helper) {
  return edit(text, 'nftables-examples/forward-redirect.nft', [
    [/^(\s*)(.*dnat ip to 127\.0\.0\.1:8021.*)$/m, (_, ind, l) => `${ind}ip daddr ${helper} tcp dport 21 accept comment "bench: the helper's path is not intercepted"\n${ind}${l}`, 'the helper exemption'],
    [/^(\s*)(chain forward \{\n.*policy drop;.*)$/m, (_, ind, l) => `${ind}${l}\n${ind}\tip daddr ${helper} tcp dport 21 ct state new accept comment "bench: the helper's path"`, 'the helper accept'],
    [
      /^(\s*)chain output \{/m,
      (m0, ind) =>
        `${ind}ct helper ftp-std {\n${ind}\ttype "ftp" protocol tcp\n${ind}\tl3proto ip\n${ind}}\n` +
        `${ind}chain bench_helper {\n${ind}\ttype filter hook prerouting priority filter; policy accept;\n${ind}\tip daddr ${helper} tcp dport 21 ct helper set "ftp-std"\n${ind}}\n${m0}`,
      'the helper',
    ],
  ]);
}

/**
 * A second proxy instance, listening on 127.0.0.1:PORT, for the sessions to ADDRESS:21: two instances
 * (the same table, elements written two ways) measured side by side in one latency run.
 */
export function withSecondProxyNft(text, address, port) {
  return edit(text, 'nftables-examples/forward-redirect.nft', [
    [/^(\s*)(.*dnat ip to 127\.0\.0\.1:8021.*)$/m, (_, ind, l) => `${ind}ip daddr ${address} tcp dport 21 dnat ip to 127.0.0.1:${port} comment "bench: the second proxy"\n${ind}${l}`, 'the second proxy'],
  ]);
}

/** A port list (nft syntax, "2121, 40000-40100") on ADDRESS opened to the LAN in the input chain: a relay's listeners. */
export function withInputAcceptNft(text, address, ports) {
  return edit(text, 'nftables-examples/forward-redirect.nft', [
    [/^(\s*)(iif "lo" accept.*)$/m, (_, ind, l) => `${ind}${l}\n${ind}iifname "lan" ip daddr ${address} tcp dport { ${ports} } accept comment "bench: a relaying proxy's control and data ports"`, 'the relay ports'],
  ]);
}

/** iptables-examples/forward-redirect.rules + the helper's path to HELPER:21. */
export function withHelperPathIpt(text, helper) {
  return edit(text, 'iptables-examples/forward-redirect.rules', [
    [/^(\*raw\n(?:.*\n)*?)(COMMIT)$/m, (_, a, b) => `${a}-A PREROUTING -d ${helper}/32 -p tcp --dport 21 -j CT --helper ftp\n${b}`, 'the helper'],
    [/^(-A PREROUTING -i lan .*DNAT.*)$/m, (l) => `-A PREROUTING -d ${helper}/32 -p tcp --dport 21 -j ACCEPT\n${l}`, 'the helper exemption'],
    [/^(-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT)$/m, (l) => `${l}\n-A FORWARD -d ${helper}/32 -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT`, 'the helper accept'],
  ]);
}

/** iptables: the second proxy instance on 127.0.0.1:PORT for the sessions to ADDRESS:21 (as withSecondProxyNft). */
export function withSecondProxyIpt(text, address, port) {
  return edit(text, 'iptables-examples/forward-redirect.rules', [
    [/^(-A PREROUTING -i lan .*DNAT --to-destination 127\.0\.0\.1:8021)$/m, (l) => `-A PREROUTING -i lan -d ${address}/32 -p tcp --dport 21 -m comment --comment "bench: the second proxy" -j DNAT --to-destination 127.0.0.1:${port}\n${l}`, 'the second proxy'],
    [/^(-A INPUT -i lan .*--dport 8021 .*-j ACCEPT)$/m, (l) => `${l}\n-A INPUT -i lan -p tcp --dport ${port} -m conntrack --ctstate DNAT -m comment --comment "bench: the second proxy" -j ACCEPT`, 'the second proxy accept'],
  ]);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { readFileSync } = await import('node:fs');
  const [kind, file, helper] = process.argv.slice(2);
  process.stdout.write((kind === 'ipt' ? withHelperPathIpt : withHelperPathNft)(readFileSync(file, 'utf8'), helper));
}
