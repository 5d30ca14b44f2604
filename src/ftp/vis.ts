// strnvis(3) with VIS_CSTYLE | VIS_NL, as OpenBSD's ftp-proxy uses for its log lines: control lines show
// "\r\n" literally and a hostile line cannot forge a second log line or terminal escapes.

const CSTYLE: Record<number, string> = {
  0x07: '\\a',
  0x08: '\\b',
  0x09: '\\t',
  0x0a: '\\n',
  0x0b: '\\v',
  0x0c: '\\f',
  0x0d: '\\r',
  0x20: ' ',
};

export function vis(data: Buffer | string, max = 300): string {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  let out = '';
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b > 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else if (CSTYLE[b] !== undefined) out += CSTYLE[b];
    else if (b === 0) out += '\\000';
    else out += `\\${b.toString(8).padStart(3, '0')}`;
    if (out.length >= max) return out.slice(0, max);
  }
  return out;
}
