// The privileged process of privilege separation, alone, with a network process of the test's choosing
// (test/helpers/evil-child.mjs): node privsep-parent.mjs CHILD.mjs [daemon flags...]. Runs until the
// child exits; says "parent: ready" once the child is, and "parent: exit" when done.
import { parseCommandLine } from '../../dist/config.js';
import { Log } from '../../dist/log.js';
import { PrivilegedParent } from '../../dist/privsep/parent.js';
import { findSetpriv } from '../../dist/privsep/plan.js';

const [childScript, ...argv] = process.argv.slice(2);
const { config } = parseCommandLine(argv);
const log = new Log({ level: 7, format: 'text' });
const parent = new PrivilegedParent({ config, log, argv, syslog: false, setpriv: findSetpriv(), dropBounding: true, execArgv: [], childScript });
try {
  await parent.start();
  process.stdout.write('parent: ready\n');
} catch (e) {
  process.stdout.write(`parent: start failed: ${e.message}\n`);
  process.exit(1);
}
