// lab.sh down ends the FTPS servers a test started in the lab (tls-lab.ts records their pids), so a
// test that died before its own cleanup leaves no vsftpd listening in a deleted namespace.
import { afterAll, expect, it } from 'vitest';
import { Lab, requireLab } from './lab.js';
import { makeLabPki, requireTlsLab, startVsftpd } from '../helpers/tls-lab.js';

let lab: Lab | undefined;
afterAll(async () => {
  await lab?.down();
});

it('lab.sh down ends a vsftpd the test left running', async () => {
  await requireLab();
  await requireTlsLab(['vsftpd', 'openssl']);
  lab = await Lab.up('forward');
  const pki = await makeLabPki(`${lab.runDir}/pki`);
  const { cert, key } = await pki.issue('vsftpd', ['198.51.100.21']);
  const v = await startVsftpd({ ns: lab.srv, dir: lab.runDir, address: '198.51.100.21', root: `${lab.runDir}/data`, cert, key, port: 2121, pasv: [52000, 52099] });
  const gone = new Promise<void>((r) => v.proc.once('exit', () => r()));
  await lab.sh('down'); // not v.stop(): what a crashed test's sweep does
  lab = undefined;
  await Promise.race([gone, new Promise((_, rej) => setTimeout(() => rej(new Error('vsftpd still running after lab.sh down')), 3000))]);
  expect(v.proc.exitCode !== null || v.proc.signalCode !== null).toBe(true);
});
