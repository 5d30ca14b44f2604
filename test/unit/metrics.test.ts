import { afterEach, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { passivePinhole } from '../../src/firewall/backend.js';
import { FakeFirewall } from '../../src/firewall/fake.js';
import { parseMetricsAddress } from '../../src/config.js';
import { instrumentFirewall, Metrics, serveMetrics } from '../../src/metrics.js';

const ends = { family: 4 as const, client: '192.168.1.10', originalServer: '198.51.100.21', server: '198.51.100.21', proxy: '198.51.100.1' };
const owner = (session: number) => ({ instance: '0000fa4e', session });

/** One sample's value from the text format. */
const sample = (text: string, name: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
};

describe('parseMetricsAddress', () => {
  it.each([
    ['127.0.0.1:9187', { host: '127.0.0.1', port: 9187 }],
    ['[::1]:9187', { host: '::1', port: 9187 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
    ['9187', null],
    ['::1:9187', null],
    ['127.0.0.1:0', null],
    ['127.0.0.1:65536', null],
    ['127.0.0.1:', null],
  ])('%s', (s, want) => {
    expect(parseMetricsAddress(s)).toEqual(want);
  });
});

describe('instrumentFirewall', () => {
  it('counts live pinholes per owner (a negotiation replaces, an end clears), times each operation, counts errors but not port conflicts', async () => {
    const m = new Metrics(false);
    const fake = new FakeFirewall();
    const fw = instrumentFirewall(fake, m);
    expect(fw.name).toBe('fake');
    await fw.init();
    await fw.replace(owner(1), [passivePinhole(ends, 50000, 60001)]);
    await fw.replace(owner(1), [passivePinhole(ends, 50001, 60002)]); // replaces: still one
    await fw.replace(owner(2), [passivePinhole(ends, 50002, 60003), passivePinhole(ends, 50003, 60004)]);
    let text = await m.text();
    expect(sample(text, 'ftp_proxy_pinholes{backend="fake"}')).toBe(3);
    fake.taken.add(60005);
    await expect(fw.replace(owner(3), [passivePinhole(ends, 50004, 60005)])).rejects.toThrow(/in use/);
    fake.failWith = 'Operation not permitted';
    await expect(fw.clear(owner(2))).rejects.toThrow(/not permitted/);
    fake.failWith = null;
    await fw.clear(owner(1));
    text = await m.text();
    expect(sample(text, 'ftp_proxy_pinholes{backend="fake"}')).toBe(2);
    expect(sample(text, 'ftp_proxy_firewall_errors_total{backend="fake",op="clear"}')).toBe(1);
    expect(sample(text, 'ftp_proxy_firewall_errors_total{backend="fake",op="replace"}')).toBeUndefined();
    expect(sample(text, 'ftp_proxy_firewall_operation_seconds_count{backend="fake",op="replace"}')).toBe(4);
    await fw.close();
    expect(sample(await m.text(), 'ftp_proxy_pinholes{backend="fake"}')).toBe(0);
  });
});

describe('serveMetrics', () => {
  let server: Server | null = null;
  afterEach(() => {
    server?.close();
    server = null;
  });

  it('serves the Prometheus text format at GET /metrics on loopback, and nothing else', async () => {
    const m = new Metrics();
    m.sessionsTotal.inc(3);
    m.sessionsRefused.inc({ reason: 'max_per_client' });
    server = await serveMetrics(m, '127.0.0.1', 0);
    const { port } = server.address() as AddressInfo;
    const r = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await r.text();
    expect(sample(body, 'ftp_proxy_sessions_total')).toBe(3);
    expect(sample(body, 'ftp_proxy_sessions_refused_total{reason="max_per_client"}')).toBe(1);
    expect(body).toMatch(/^ftp_proxy_process_resident_memory_bytes \d+/m);
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(404);
  });
});

describe('examples/grafana-dashboard.json', () => {
  it('queries only metrics the daemon exports', async () => {
    const { readFileSync } = await import('node:fs');
    const dash = JSON.parse(readFileSync(new URL('../../examples/grafana-dashboard.json', import.meta.url), 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const m = new Metrics();
    // Every family, also those without a sample yet (a labelled counter never incremented has none).
    const names = new Set((await m.registry.getMetricsAsJSON()).flatMap((f) => [f.name, `${f.name}_bucket`, `${f.name}_count`, `${f.name}_sum`]));
    const used = dash.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/\b(ftp_proxy_[a-z0-9_]+)/g)].map((x) => x[1]!)));
    expect(used.length).toBeGreaterThan(8);
    expect(used.filter((n) => !names.has(n))).toEqual([]);
  });
});
