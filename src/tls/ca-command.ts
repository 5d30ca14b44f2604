// `ftp-proxy ca ...` (argv after "ca"): the command line of the CA tool. Loaded only for this command, so
// the daemon does not load the X.509 library unless it needs it.
import { CaCreateError, createCa, describeCreatedCa } from './ca.js';

export const CA_USAGE = 'usage: ftp-proxy ca create DIR\n';

export type CaOutcome = { exit: number; stdout?: string; stderr?: string };

export async function caCommand(argv: string[], create = createCa): Promise<CaOutcome> {
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')) return { exit: 0, stdout: CA_USAGE };
  if (argv[0] !== 'create' || argv.length !== 2 || argv[1]!.startsWith('-') || !argv[1]) {
    return { exit: 1, stderr: `ftp-proxy: ca: expected "create DIR"\n${CA_USAGE}` };
  }
  try {
    return { exit: 0, stdout: describeCreatedCa(await create(argv[1]!)) };
  } catch (e) {
    const msg = e instanceof CaCreateError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
    return { exit: 1, stderr: `ftp-proxy: ca create: ${msg}\n` };
  }
}
