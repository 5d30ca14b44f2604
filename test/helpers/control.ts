// Shared by the state-machine unit tests: a session taken past the greeting and login.
import type { FtpControl } from '../../src/ftp/control.js';

/** Greeting, USER, 331, PASS, 230: the command FIFO is empty afterwards. */
export function logIn(m: FtpControl): FtpControl {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');
  m.serverLine(b('220 ready\r\n'));
  m.clientLine(b('USER lab\r\n'));
  m.serverLine(b('331 password\r\n'));
  m.clientLine(b('PASS lab\r\n'));
  m.serverLine(b('230 in\r\n'));
  return m;
}
