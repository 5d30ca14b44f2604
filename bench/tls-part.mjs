// Part 5 of npm run bench: FTPS (issue 12), side by side in one run, the same FTPS server and client for
// every path:
//   (a) plain routing, no ruleset, client straight to the server;
//   (f) the same through the firewall's stateful filter and masquerade (the shipped example's own path);
//   (c) ftp-proxy, tls_client accept + tls_server forward: PROT P relayed in userland by its TLS relay,
//       PROT C after CCC through its kernel pinhole;
//   (m) proftpd's mod_proxy, a reverse FTPS proxy that relays the data in userland (PROT P).
// and PASV->227 under TLS through ftp-proxy, through mod_proxy and straight to the server, interleaved.
// bench.mjs hands in its lab helpers (ctx); this file owns only the FTPS processes and their files.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { curlTlsArgs, ftpProxyTlsPolicy, ftpsServerConf, modProxyConf, pkiCommands } from './tls-peers.mjs';
import { withHelperPathNft, withInputAcceptNft } from './rulesets/combine.mjs';

export const MOD_PROXY_SO = '/usr/lib/proftpd/mod_proxy.so';
export const MOD_TLS_SO = '/usr/lib/proftpd/mod_tls.so';

/** CPU seconds so far of every process in a network namespace, with the children they have reaped. */
export function nsCpu(netns) {
  let pids = [];
  try {
    pids = execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return NaN;
  }
  let ticks = 0;
  for (const pid of pids) {
    try {
      // after the ")" of the command name: utime, stime, cutime, cstime are the 12th to 15th fields
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone in between
    }
  }
  return ticks / 100;
}

/**
 * ctx: { P, RUN, ROOT, NS, LAB_ADDR: { server, direct, fwLan }, PIN, say, sleep, ns, lab, spawnIn, waitLine,
 *        stop, flushFw, startProxy, downloadRun, verify, summarize, pct }
 */
export async function tlsPart(ctx, results) {
  const { P, RUN, ROOT, NS, PIN, say, sleep, ns, lab, spawnIn, stop, flushFw, startProxy, downloadRun, verify, summarize, pct } = ctx;
  const { server: SRV_TLS, direct: SRV_DIRECT, fwLan: FW_LAN } = ctx.LAB_ADDR;
  const dir = `${RUN}/tls`;
  mkdirSync(`${dir}/mod-proxy-tables`, { recursive: true });
  chmodSync(dir, 0o755);
  // mod_proxy's session processes run as nobody and keep their tables there
  chownSync(`${dir}/mod-proxy-tables`, 65534, 65534);
  const pki = pkiCommands(dir, [SRV_TLS, SRV_DIRECT, FW_LAN]);
  writeFileSync(pki.ext.file, pki.ext.text);
  for (const c of pki.commands) execFileSync(c[0], c.slice(1), { stdio: 'ignore' });
  const ca = `${dir}/ca.pem`;
  const cert = `${dir}/srv.pem`;
  const key = `${dir}/srv.key`;
  const out = { load: { start: loadavg() }, server: 'proftpd 1.3.8 + mod_tls, TLSRequired ctrl, session reuse required', rows: {}, ftpProxy: { measured: false, reason: '' }, tlsLines: [] };

  const listening = async (where, host, port, proc, what) => {
    for (let i = 0; i < 100; i++) {
      const r = await ns(where, ['bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`], { reject: false });
      if (r.exitCode === 0) return;
      if (proc.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`${what} did not listen on ${host}:${port}: ${[...proc.lines, ...proc.errLines].slice(-5).join(' | ')}`);
  };
  const proftpd = async (where, conf, text, host, port, what) => {
    writeFileSync(conf, text);
    const check = await ns(where, ['proftpd', '-t', '-c', conf], { reject: false });
    if (check.exitCode !== 0) throw new Error(`${what}: ${conf}: ${check.stderr.trim()}`);
    const p = spawnIn(where, ['proftpd', '-n', '-c', conf]);
    await listening(where, host, port, p, what);
    return p;
  };

  // The FTPS server, on its CPU as the lab's plain server (the client is on the other one)
  const server = await proftpd('srv', `${dir}/ftps-server.conf`, ftpsServerConf({ dir, addresses: [SRV_TLS, SRV_DIRECT], passwd: `${RUN}/ftpd.passwd`, cert, key, pasv: [51000, 51999] }), SRV_TLS, 21, 'the FTPS server (proftpd + mod_tls)');
  if (PIN) execFileSync('taskset', ['-a', '-p', '2', String(server.pid)], { stdio: 'ignore' });
  const modProxy = await proftpd('fw', `${dir}/mod-proxy.conf`, modProxyConf({ dir, address: FW_LAN, port: 2121, backend: SRV_TLS, cert, key, ca, pasv: [40000, 40100] }), FW_LAN, 2121, "proftpd's mod_proxy");

  // One ruleset for (f), (c), (m) and the latency rounds: the shipped example, a non-intercepted path to
  // the server's second address (the direct sessions), mod_proxy's ports open on the LAN side.
  const combined = `${dir}/combined.nft`;
  writeFileSync(combined, withInputAcceptNft(withHelperPathNft(readFileSync(`${ROOT}nftables-examples/forward-redirect.nft`, 'utf8'), SRV_DIRECT), FW_LAN, '2121, 40000-40100'));
  const policy = `${dir}/ftp-proxy.policy`;
  writeFileSync(policy, ftpProxyTlsPolicy({ cert, key, ca }));

  const fw = () => nsCpu(NS.fw);
  const runs = { a: { p: [], c: [] }, ...(ctx.QUICK ? {} : { f: { c: [] } }), c: { p: [], c: [] }, m: { p: [] } };
  const sha = {};
  const lat = { proxy: [], modProxy: [], direct: [], lost: [0, 0, 0], errors: [] };
  const one = async (row, prot, host, port) => {
    const curl = curlTlsArgs(prot, ca);
    const r = await downloadRun(host, port, 'pasv', P.perRun, { curl, procCpu: fw });
    runs[row][prot].push(r);
    if (!r.ok) say(`tls (${row}) PROT ${prot.toUpperCase()}: ${r.error}`);
    if (sha[`${row}-${prot}`] === undefined) sha[`${row}-${prot}`] = await verify(host, port, 'pasv', curl);
  };
  try {
    for (let round = 0; round < P.tlsRounds; round++) {
      say(`tls round ${round + 1}/${P.tlsRounds}: (a) plain routing`);
      await flushFw();
      await one('a', 'p', SRV_TLS, 21);
      await one('a', 'c', SRV_TLS, 21);
      await lab('fw-load', combined);
      say(`tls round ${round + 1}/${P.tlsRounds}: (f) masquerade, (c) ftp-proxy, (m) mod_proxy`);
      if (!ctx.QUICK) await one('f', 'c', SRV_DIRECT, 21); // --quick: the smoke test needs no second baseline
      let proxy = null;
      if (round === 0 || out.ftpProxy.measured) {
        try {
          proxy = await startProxy('nftables', { args: ['-f', policy] });
        } catch (e) {
          // Until sessions speak TLS, the daemon refuses a policy with tls_client accept.
          const msg = String(e.message ?? e);
          const line = msg.split(' | ').find((l) => l.includes(policy)) ?? msg;
          out.ftpProxy.reason = `ftp-proxy did not start with tls_client accept, tls_server forward: ${line.replace(`${policy}:`, 'policy line ').slice(0, 160)}`;
        }
      }
      try {
        if (proxy) {
          await one('c', 'p', SRV_TLS, 21);
          await one('c', 'c', SRV_TLS, 21);
          const bad = runs.c.p.concat(runs.c.c).filter((x) => !x.ok);
          if (round === 0) {
            out.ftpProxy.measured = bad.length === 0;
            if (bad.length) out.ftpProxy.reason = `downloads through ftp-proxy failed: ${bad[0].error}`;
          }
          out.tlsLines = proxy.errLines.filter((l) => /TLS/.test(l)).slice(0, 4);
        }
        await one('m', 'p', FW_LAN, 2121);
        say(`tls round ${round + 1}/${P.tlsRounds}: PASV->227 under TLS`);
        const hosts = [...(out.ftpProxy.measured ? [SRV_TLS] : []), `${FW_LAN}:2121`, SRV_DIRECT];
        const r = await ns('cli', [process.execPath, `${ROOT}bench/client.mjs`, 'latency-tls', 'pasv', String(P.latN), String(P.latSeconds), '20', ca, ...hosts], { reject: false, timeout: 300000 });
        const j = JSON.parse(r.stdout.trim().split('\n').at(-1) || '{}');
        if (j.error || !j.samples) throw new Error(`TLS latency client: ${j.error ?? r.stderr}`);
        const k = out.ftpProxy.measured ? 1 : 0;
        if (k) lat.proxy.push(...j.samples[0]);
        lat.modProxy.push(...j.samples[k]);
        lat.direct.push(...j.samples[k + 1]);
        j.lost.forEach((x, i) => (lat.lost[i + 1 - k] += x));
        lat.errors.push(...j.errors);
      } finally {
        await stop(proxy);
      }
    }
  } finally {
    await stop(modProxy);
    await stop(server);
  }
  const mpLog = existsSync(`${dir}/mod-proxy.proxy.log`) ? readFileSync(`${dir}/mod-proxy.proxy.log`, 'utf8') : '';
  out.modProxyTls = [...new Set(mpLog.match(/TLSv[\d.]+ connection created, using cipher \S+/g) ?? [])];
  const names = { a: 'plain routing, no proxy', f: 'masquerade, no proxy', c: 'ftp-proxy', m: 'proftpd mod_proxy' };
  for (const [row, prots] of Object.entries(runs)) {
    out.rows[row] = { name: names[row] };
    for (const [prot, rs] of Object.entries(prots)) out.rows[row][prot] = { ...summarize(rs), sha256: sha[`${row}-${prot}`] };
  }
  const ms = (us) => +(us / 1000).toFixed(3);
  const st = (xs) => ({ n: xs.length, p50: ms(pct(xs, 0.5)), p99: ms(pct(xs, 0.99)) });
  out.latency = { proxy: st(lat.proxy), modProxy: st(lat.modProxy), direct: st(lat.direct), lost: { proxy: lat.lost[0], modProxy: lat.lost[1], direct: lat.lost[2] }, errors: lat.errors.slice(0, 5) };
  const added = (a) => ({ p50: +(a.p50 - out.latency.direct.p50).toFixed(3), p99: +(a.p99 - out.latency.direct.p99).toFixed(3) });
  out.latency.addedProxy = added(out.latency.proxy);
  out.latency.addedModProxy = added(out.latency.modProxy);
  out.load.end = loadavg();
  results.tls = out;
}
