// Prometheus metrics (--metrics ADDRESS:PORT), with prom-client: the text format, histograms and the
// process collectors are its job, and it is what Node services expose to Prometheus. Counting is a few
// additions on paths that already do I/O; only a scrape formats anything.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { type FirewallBackend, type Owner, type Pinhole, PinholeConflict } from './firewall/backend.js';

export type NegotiationMode = 'passive' | 'active' | 'join' | 'passthrough';

export class Metrics {
  readonly registry = new Registry();
  readonly sessionsLive: Gauge;
  readonly sessionsTotal: Counter;
  readonly sessionsRefused: Counter<'reason'>;
  readonly negotiations: Counter<'mode' | 'result'>;
  readonly pinholesLive: Gauge<'backend'>;
  readonly firewallSeconds: Histogram<'backend' | 'op'>;
  readonly firewallErrors: Counter<'backend' | 'op'>;
  readonly relayedBytes: Counter<'kind' | 'direction'>;
  readonly tlsHandshakes: Counter<'leg' | 'result'>;

  constructor(withProcess = true) {
    const registers = [this.registry];
    this.sessionsLive = new Gauge({ name: 'ftp_proxy_sessions', help: 'Live FTP control sessions.', registers });
    this.sessionsTotal = new Counter({ name: 'ftp_proxy_sessions_total', help: 'FTP control sessions accepted since start.', registers });
    this.sessionsRefused = new Counter({
      name: 'ftp_proxy_sessions_refused_total',
      help: 'Connections refused before a session started, by reason (max_sessions, max_per_client, fd_budget, self_loop, ...).',
      labelNames: ['reason'],
      registers,
    });
    this.negotiations = new Counter({
      name: 'ftp_proxy_negotiations_total',
      help: 'Data connection negotiations (PASV/EPSV replies, PORT/EPRT commands), by mode and result.',
      labelNames: ['mode', 'result'],
      registers,
    });
    this.pinholesLive = new Gauge({ name: 'ftp_proxy_pinholes', help: 'Pinholes this instance holds in the firewall.', labelNames: ['backend'], registers });
    this.firewallSeconds = new Histogram({
      name: 'ftp_proxy_firewall_operation_seconds',
      help: 'Time for one firewall operation (replace: a negotiation, clear: a session end).',
      labelNames: ['backend', 'op'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.firewallErrors = new Counter({
      name: 'ftp_proxy_firewall_errors_total',
      help: 'Firewall operations that failed (a port already taken, retried with another, is not an error).',
      labelNames: ['backend', 'op'],
      registers,
    });
    this.relayedBytes = new Counter({
      name: 'ftp_proxy_relayed_bytes_total',
      help: 'Data bytes the proxy relayed in userland (data_mode joins, TLS relays); kernel-forwarded data is not counted.',
      labelNames: ['kind', 'direction'],
      registers,
    });
    this.tlsHandshakes = new Counter({ name: 'ftp_proxy_tls_handshakes_total', help: 'TLS handshakes, by leg and result.', labelNames: ['leg', 'result'], registers });
    if (withProcess) collectDefaultMetrics({ register: this.registry, prefix: 'ftp_proxy_' });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * The backend with its operations timed and its pinholes counted: a decorator, so that no backend and
 * no session knows about metrics.
 */
export function instrumentFirewall(fw: FirewallBackend, m: Metrics): FirewallBackend {
  const backend = fw.name;
  const held = new Map<string, number>();
  const key = (o: Owner): string => `${o.instance}.${o.session}`;
  const gauge = m.pinholesLive.labels(backend);
  const timed = async <T>(op: string, f: () => Promise<T>): Promise<T> => {
    const end = m.firewallSeconds.startTimer({ backend, op });
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof PinholeConflict)) m.firewallErrors.inc({ backend, op });
      throw e;
    } finally {
      end();
    }
  };
  const set = (o: Owner, n: number): void => {
    const before = held.get(key(o)) ?? 0;
    if (n) held.set(key(o), n);
    else held.delete(key(o));
    gauge.inc(n - before);
  };
  return {
    get name() {
      return fw.name;
    },
    get instance() {
      return fw.instance;
    },
    init: () => timed('init', () => fw.init()),
    replace: (o: Owner, p: Pinhole[]) => timed('replace', () => fw.replace(o, p)).then(() => set(o, p.length)),
    clear: (o: Owner) => timed('clear', () => fw.clear(o)).then(() => set(o, 0)),
    close: () =>
      timed('close', () => fw.close()).then(() => {
        held.clear();
        gauge.set(0);
      }),
  };
}

/** The HTTP endpoint: GET /metrics, and nothing else. */
export function serveMetrics(m: Metrics, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('ftp-proxy: only GET /metrics here\n');
      return;
    }
    m.text().then(
      (body) => res.writeHead(200, { 'content-type': m.registry.contentType }).end(body),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e instanceof Error ? e.message : String(e)}\n`),
    );
  });
  // A scraper is no client of the FTP service: few connections, short-lived.
  server.maxConnections = 16;
  server.headersTimeout = 5000;
  server.requestTimeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}
