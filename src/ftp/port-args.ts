// Parsers and formatters for the four FTP data-connection negotiations:
//   PORT h1,h2,h3,h4,p1,p2      (RFC 959)      client -> server, active
//   EPRT |af|addr|port|         (RFC 2428)     client -> server, active
//   227 ... h1,h2,h3,h4,p1,p2   (RFC 959/1123) server -> client, passive
//   229 ... (|||port|)          (RFC 2428)     server -> client, passive
// Pure functions: text in, value or reason out. Only the port is ever trusted by the proxy; the address is
// parsed so that malformed input is recognised, never used to open anything.
import { canonical, type Family, isIPv4, isIPv6 } from '../net/address.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

export interface HostPort {
  address: string;
  port: number;
}

export interface ExtendedHostPort extends HostPort {
  family: Family;
}

const fail = (reason: string): Parsed<never> => ({ ok: false, reason });

/** Text of a line without its line ending (CRLF, LF or a stray CR). */
export function stripEol(line: string): string {
  return line.replace(/\r?\n$/, '').replace(/\r$/, '');
}

function byte(text: string): number | null {
  if (!/^\d{1,3}$/.test(text)) return null;
  const n = Number(text);
  return n <= 255 ? n : null;
}

/** Six comma-separated decimal bytes: the host-port form of RFC 959. */
function parseHostPortNumbers(text: string): Parsed<HostPort> {
  const parts = text.split(',');
  if (parts.length !== 6) return fail('expected six comma-separated numbers');
  const bytes = parts.map((p) => byte(p.trim()));
  if (bytes.some((b) => b === null)) return fail('a number is not between 0 and 255');
  const [a, b, c, d, hi, lo] = bytes as number[];
  return { ok: true, value: { address: `${a}.${b}.${c}.${d}`, port: hi! * 256 + lo! } };
}

/** Scratch for plainHostPort's six numbers (no array per call). */
const six = new Uint16Array(6);

/**
 * The usual spelling, "h1,h2,h3,h4,p1,p2" of 1-3 digits each, nothing else, read in one pass without a
 * regex or an array per call (it is on every PORT's path). Null for anything else, valid or not (a
 * space, a number over 255): parseHostPortNumbers then decides as it always did.
 */
function plainHostPort(text: string): Parsed<HostPort> | null {
  let field = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (++digits > 3) return null;
      value = value * 10 + (c - 0x30);
    } else if (c === 0x2c && digits > 0 && field < 5 && value <= 255) {
      six[field++] = value;
      digits = 0;
      value = 0;
    } else {
      return null;
    }
  }
  if (field !== 5 || digits === 0 || value > 255) return null;
  return { ok: true, value: { address: `${six[0]}.${six[1]}.${six[2]}.${six[3]}`, port: six[4]! * 256 + value } };
}

/** The argument of a PORT command (the text after "PORT "). */
export function parsePortArg(arg: string): Parsed<HostPort> {
  // The usual argument has no line ending or blanks to strip: straight to the one-pass reader.
  return plainHostPort(arg) ?? parseHostPortNumbers(stripEol(arg).trim());
}

/** The argument of an EPRT command: <d><af><d><address><d><port><d>, d any printable ASCII but digits. */
export function parseEprtArg(arg: string): Parsed<ExtendedHostPort> {
  const text = stripEol(arg).trim();
  const d = text[0];
  if (d === undefined || d.charCodeAt(0) < 33 || d.charCodeAt(0) > 126 || /[0-9]/.test(d)) {
    return fail('bad delimiter');
  }
  const fields = text.split(d);
  // "|1|addr|port|" splits into ["", "1", "addr", "port", ""]
  if (fields.length !== 5 || fields[0] !== '' || fields[4] !== '') return fail('expected |af|address|port|');
  const [, af, address, portText] = fields as [string, string, string, string, string];
  if (af !== '1' && af !== '2') return fail('unsupported address family'); // not echoed: it is the client's text
  const family: Family = af === '1' ? 4 : 6;
  if (family === 4 ? !isIPv4(address) : !isIPv6(address)) return fail('bad address');
  const port = parsePortNumber(portText);
  if (port === null) return fail('bad port number');
  return { ok: true, value: { family, address: canonical(address), port } };
}

function parsePortNumber(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : null;
}

/**
 * The text of a 227 reply (all its lines, codes included). RFC 1123 4.1.2.6: the numbers may appear
 * anywhere, with or without parentheses, so scan for the first run of six comma-separated numbers.
 */
export function parse227(text: string): Parsed<HostPort> {
  const m = /(?<!\d)(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3})(?!\d)/.exec(text);
  if (!m) return fail('no h1,h2,h3,h4,p1,p2 in 227 reply');
  // The regex took 1-3 digits each: only the range is left to check (no join and re-split).
  const a = Number(m[1]);
  const b = Number(m[2]);
  const c = Number(m[3]);
  const d = Number(m[4]);
  const hi = Number(m[5]);
  const lo = Number(m[6]);
  if (a > 255 || b > 255 || c > 255 || d > 255 || hi > 255 || lo > 255) return fail('a number is not between 0 and 255');
  return { ok: true, value: { address: `${a}.${b}.${c}.${d}`, port: hi * 256 + lo } };
}

/** The text of a 229 reply: "(<d><d><d>port<d>)" with one delimiter repeated (RFC 2428 section 3). */
export function parse229(text: string): Parsed<number> {
  const m = /\(([\x21-\x7e])\1\1(\d{1,5})\1\)/.exec(text);
  if (!m || /[0-9]/.test(m[1]!)) return fail('no (|||port|) in 229 reply');
  const port = parsePortNumber(m[2]!);
  if (port === null) return fail('bad port number');
  return { ok: true, value: port };
}

/** "a,b,c,d" of the addresses lately formatted: a session names the same one or two in every reply. */
const commaForms = new Map<string, string>();

function commaHostPort(address: string, port: number): string {
  let comma = commaForms.get(address);
  if (comma === undefined) {
    if (commaForms.size >= 64) commaForms.clear(); // bounded: a busy proxy has many servers
    comma = address.split('.').join(',');
    commaForms.set(address, comma);
  }
  return `${comma},${port >> 8},${port & 255}`;
}

export function formatPort(address: string, port: number): string {
  return `PORT ${commaHostPort(address, port)}\r\n`;
}

export function formatEprt(family: Family, address: string, port: number): string {
  return `EPRT |${family === 4 ? 1 : 2}|${address}|${port}|\r\n`;
}

export function format227(address: string, port: number): string {
  return `227 Entering Passive Mode (${commaHostPort(address, port)})\r\n`;
}

export function format229(port: number): string {
  return `229 Entering Extended Passive Mode (|||${port}|)\r\n`;
}
