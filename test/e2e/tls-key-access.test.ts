// Under privilege separation the TLS files are read by the daemon's own user: a key file only root can
// read must stop --check-config (and start-up) with the file and what to do, not a bare EACCES.
import { execa } from 'execa';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI } from './lab.js';
import { makeLabPki, requireTlsLab } from '../helpers/tls-lab.js';

let dir: string;

beforeAll(async () => {
  await requireTlsLab(['openssl']);
  dir = mkdtempSync('/tmp/ftpe-keyaccess-');
  chmodSync(dir, 0o755);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a key file the daemon user cannot read: --check-config names it and says how to fix it', async () => {
  const pki = await makeLabPki(`${dir}/pki`);
  chmodSync(`${dir}/pki`, 0o755);
  const { cert, key } = await pki.issue('proxy', ['ftp.lab']);
  chmodSync(cert, 0o644);
  chmodSync(key, 0o600); // root's alone
  const policy = `${dir}/p.policy`;
  writeFileSync(policy, `tls_client accept\ntls_certificate "${cert}"\ntls_key "${key}"\n`, { mode: 0o644 });
  const r = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, '--check-config', '-f', policy], { reject: false });
  expect(r.exitCode).toBe(1);
  expect(r.stderr).toContain(`${key}: cannot read it (EACCES; the daemon reads it as uid 65534: give that user's group read access (chmod 0640))`);
});
