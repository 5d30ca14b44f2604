// strnvis(3) with VIS_CSTYLE | VIS_NL, as OpenBSD's ftp-proxy encodes its log lines (vis.c): control
// lines show "\r\n" literally, and a hostile line can neither forge a second log line nor send terminal
// escapes. Space and tab stay as they are (no VIS_SP, no VIS_TAB).

const CSTYLE: Record<number, string> = {
  0x0a: '\\n',
  0x0d: '\\r',
  0x08: '\\b',
  0x07: '\\a',
  0x0b: '\\v',
  0x09: '\\t',
  0x0c: '\\f',
};

const isOctalDigit = (b: number | undefined): boolean => b !== undefined && b >= 0x30 && b <= 0x37;

/** vis(3) of one byte, given the byte after it (for "\0" before an octal digit). */
function visByte(c: number, next: number | undefined): string {
  if (c === 0x5c) return '\\\\';
  if ((c > 0x20 && c < 0x7f) || c === 0x20 || c === 0x09) return String.fromCharCode(c);
  const cstyle = CSTYLE[c];
  if (cstyle) return cstyle;
  if (c === 0) return isOctalDigit(next) ? '\\000' : '\\0';
  if ((c & 0x7f) === 0x20) return `\\${c.toString(8).padStart(3, '0')}`;
  let out = '\\';
  let low = c;
  if (c & 0x80) {
    low = c & 0x7f;
    out += 'M';
  }
  if (low < 0x20 || low === 0x7f) out += `^${low === 0x7f ? '?' : String.fromCharCode(low + 0x40)}`;
  else out += `-${String.fromCharCode(low)}`;
  return out;
}

/** At most `max` characters; like strnvis, an escape that does not fit is left out whole. */
export function vis(data: Buffer | string, max = 300): string {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const enc = visByte(bytes[i]!, bytes[i + 1]);
    if (out.length + enc.length > max) break;
    out += enc;
  }
  return out;
}
