// The built command: `ftp-proxy ca create DIR` (files, modes, refusal to overwrite, what it prints), its
// CA accepted by --check-config as tls_ca_certificate/tls_ca_key, and a TLS mode refused by
// --check-config and at start-up (it fails on the policy, before the firewall is touched).
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, requireLab } from './lab.js';

let dir: string;
beforeAll(async () => {
  await requireLab();
  dir = mkdtempSync(join(tmpdir(), 'ftp-proxy-ca-cli-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const run = (args: string[]) => execa('node', [CLI, ...args], { reject: false, timeout: 30_000 });

describe('ftp-proxy ca create', () => {
  it('writes the CA, prints what to deploy, and refuses to overwrite it', async () => {
    const ca = join(dir, 'ca');
    const r = await run(['ca', 'create', ca]);
    expect(r.exitCode).toBe(0);
    expect(statSync(join(ca, 'ca.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(ca, 'ca.crt')).mode & 0o777).toBe(0o644);
    const fp = new X509Certificate(readFileSync(join(ca, 'ca.crt'))).fingerprint256;
    expect(r.stdout).toContain(fp);
    expect(r.stdout).toContain(`tls_ca_certificate "${join(ca, 'ca.crt')}"`);
    const key = readFileSync(join(ca, 'ca.key'), 'utf8');
    const again = await run(['ca', 'create', ca]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/ca\.key exists; refusing to overwrite a CA/);
    expect(readFileSync(join(ca, 'ca.key'), 'utf8')).toBe(key);
    expect((await run(['ca'])).stderr).toContain('usage: ftp-proxy ca create DIR');
  });

  it('--check-config takes its CA; a TLS mode is refused by --check-config and at start-up', async () => {
    const ca = join(dir, 'ca2');
    expect((await run(['ca', 'create', ca])).exitCode).toBe(0);
    const keys = `tls_ca_certificate "${join(ca, 'ca.crt')}"\ntls_ca_key "${join(ca, 'ca.key')}"\n`;
    const ok = join(dir, 'ok.policy');
    writeFileSync(ok, `tls_client none\n${keys}`);
    const r = await run(['--check-config', '-f', ok]);
    expect(r.stdout).toContain(`${ok}: OK`);
    expect(r.exitCode).toBe(0);

    const tls = join(dir, 'tls.policy');
    writeFileSync(tls, `tls_client accept\n${keys}`);
    const c = await run(['--check-config', '-f', tls]);
    expect(c.exitCode).toBe(1);
    expect(c.stderr).toContain(`${tls}:1: tls_client: accept: not implemented yet in this version`);
    const d = await run(['-d', '-b', '127.0.0.1', '-p', '0', '-f', tls]);
    expect(d.exitCode).toBe(1);
    expect(d.stderr).toContain(`${tls}:1: tls_client: accept: not implemented yet in this version`);
  });
});
