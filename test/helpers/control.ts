// Shared by the state-machine unit tests: a session taken past the greeting and login.
import type { FtpControl, SessionAddresses } from '../../src/ftp/control.js';

/** A forward-mode IPv4 session and its IPv6 twin. */
export const V4: SessionAddresses = {
  client: '192.168.1.10',
  originalServer: '198.51.100.21',
  server: '198.51.100.21',
  proxy: '203.0.113.5',
  clientFamily: 4,
  serverFamily: 4,
};
export const V6: SessionAddresses = {
  client: '2001:db8::10',
  originalServer: '2001:db8:ffff::21',
  server: '2001:db8:ffff::21',
  proxy: '2001:db8::1',
  clientFamily: 6,
  serverFamily: 6,
};

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
