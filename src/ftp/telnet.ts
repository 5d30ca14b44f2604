// Telnet bytes in a command line. FTP's control channel is Telnet (RFC 959), and servers delete Telnet
// sequences from what they read, each its own way: BSD ftpds drop IAC and the byte after it anywhere in
// a line (so "D\xff\xf1ELE" reads as DELE), proftpd keeps some of them, IAC IAC is a literal 0xff.
// The proxy judges a line by its verb and argument, so it must never see a different line than the
// server does. Only one use of Telnet is real on an FTP control channel: the IAC IP / IAC DM sequence
// clients send before ABOR, at the start of the line. That leading sequence is skipped (every server
// agrees on what it means); any other 0xff byte, and a CR that is not the line's ending (a server
// splitting at CR would read two commands where the proxy judged one), make the line refused. Pure.

const IAC = 0xff;
const CR = 0x0d;
const LF = 0x0a;

/** Bytes of the Telnet commands at the start of a line: IAC c (c 240-250), IAC WILL/WONT/DO/DONT o. */
export function leadingTelnet(line: Buffer): number {
  let i = 0;
  for (;;) {
    if (line[i] !== IAC) return i;
    const cmd = line[i + 1];
    if (cmd !== undefined && cmd >= 240 && cmd <= 250) {
      i += 2;
      continue;
    }
    const opt = line[i + 2];
    // An option byte that is printable, a line ending or IAC would be read differently by servers that
    // drop two bytes and servers that drop three: not a leading sequence then.
    if (cmd !== undefined && cmd >= 251 && cmd <= 254 && opt !== undefined && (opt < 0x20 || opt > 0x7e) && opt !== CR && opt !== LF && opt !== IAC) {
      i += 3;
      continue;
    }
    return i; // IAC IAC (a literal 0xff), a stray IAC: not skipped, refused below
  }
}

/** Why the line must not go to the server, or null. `line` ends with LF (or is the last, partial one). */
export function telnetProblem(line: Buffer): string | null {
  let end = line.length;
  if (end && line[end - 1] === LF) end--;
  if (end && line[end - 1] === CR) end--;
  const body = line.subarray(leadingTelnet(line), end);
  if (body.includes(IAC)) return 'a Telnet IAC byte after the start of the line';
  if (body.includes(CR)) return 'a CR inside the line';
  return null;
}
