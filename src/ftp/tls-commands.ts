// What the FTPS commands of RFC 2228/4217 (AUTH, PBSZ, PROT, CCC) and REIN mean in one session, given
// the policy's tls_client/tls_server modes and the state of the two legs. Pure: FtpControl asks, and
// carries out the verdict (a local reply, a TLS change on a leg, or the command on to the server).
import type { TlsClientMode, TlsServerMode } from '../policy/tls.js';

export interface TlsLegState {
  client: TlsClientMode;
  server: TlsServerMode;
  /** The client leg speaks TLS now; `clientSecured`: it did at some point (CCC leaves it plain). */
  clientTls: boolean;
  clientSecured: boolean;
  serverTls: boolean;
  /** USER was sent (AUTH after it would leave a login half made in the clear). */
  userSent: boolean;
  /** tls_client passthrough: whether a port range is known for this server. */
  passthroughRange: boolean;
}

export type ProtLevel = 'C' | 'P';

export type TlsVerdict =
  /** Not a TLS matter here: the usual handling (the command goes to the server). */
  | { act: 'pass' }
  /** Answer this locally. */
  | { act: 'reply'; text: string }
  /** AUTH: the proxy says 234 and starts TLS with the client. */
  | { act: 'auth-local' }
  /** AUTH: TLS with the server first (AUTH TLS to it), then 234 and TLS with the client. */
  | { act: 'auth-server' }
  /** passthrough: AUTH goes to the server; after its 234 the session goes blind. */
  | { act: 'auth-passthrough' }
  /** PBSZ/PROT answered by the proxy (the server leg is plain). */
  | { act: 'pbsz-local' }
  | { act: 'prot-local'; level: ProtLevel }
  /** PROT to the server as well: both legs take the level when it says 2xx. */
  | { act: 'prot-forward'; level: ProtLevel }
  /** CCC: the proxy says 200 and the client leg returns to plain text. */
  | { act: 'ccc' };

/** Commands tls_client require lets through before the client leg is TLS (RFC 4217 leaves these open). */
export const BEFORE_AUTH = new Set(['AUTH', 'FEAT', 'HELP', 'QUIT', 'NOOP']);

/** AUTH mechanisms RFC 4217 names ("SSL" is what curl tries first; TLS-C/TLS-P are old aliases). */
const MECHANISMS = new Set(['TLS', 'TLS-C', 'SSL', 'TLS-P']);

const terminates = (m: TlsClientMode): boolean => m === 'accept' || m === 'require';

/** Whether the server leg is to be TLS once the client leg is (tls_server forward or require). */
export const serverFollows = (m: TlsServerMode): boolean => m === 'forward' || m === 'require';

export function tlsCommand(verb: string, arg: string, s: TlsLegState): TlsVerdict {
  if (verb === 'REIN' && (s.clientTls || s.clientSecured || s.serverTls)) {
    // (After CCC too: the data protection the client set under TLS would outlive the reset.)
    // REIN would have to tear down TLS on both legs in step with the server; refused (RFC 4217 allows it).
    return { act: 'reply', text: '502 REIN not allowed under TLS through ftp-proxy\r\n' };
  }
  if (!s.clientSecured && s.serverTls && (verb === 'PBSZ' || verb === 'PROT' || verb === 'CCC')) {
    // The server leg's TLS is the proxy's (tls_server require): a plain client must not turn its data
    // protection or its TLS off under the relay's feet.
    return { act: 'reply', text: verb === 'CCC' ? '533 Control channel is not protected\r\n' : `503 ${verb} needs AUTH TLS first\r\n` };
  }
  if (s.client === 'none') return { act: 'pass' };
  if (s.client === 'passthrough') {
    if (verb !== 'AUTH') return { act: 'pass' };
    if (!MECHANISMS.has(arg.trim().toUpperCase())) return { act: 'reply', text: '504 AUTH mechanism not supported\r\n' };
    if (!s.passthroughRange) return { act: 'reply', text: "534 AUTH refused: no tls_passthrough_ports for this server in the proxy's policy\r\n" };
    return { act: 'auth-passthrough' };
  }
  if (s.client === 'require' && !s.clientSecured && !BEFORE_AUTH.has(verb) && verb !== 'PBSZ' && verb !== 'PROT' && verb !== 'CCC') {
    return { act: 'reply', text: '530 This proxy requires FTPS: send AUTH TLS first\r\n' };
  }
  if (!terminates(s.client)) return { act: 'pass' };
  switch (verb) {
    case 'AUTH': {
      if (s.clientTls) return { act: 'reply', text: '503 TLS is already active on this connection\r\n' };
      if (s.clientSecured) return { act: 'reply', text: '503 AUTH after CCC is not supported\r\n' };
      if (s.userSent) return { act: 'reply', text: '503 AUTH must come before USER\r\n' };
      if (!MECHANISMS.has(arg.trim().toUpperCase())) return { act: 'reply', text: '504 AUTH mechanism not supported, use AUTH TLS\r\n' };
      return serverFollows(s.server) && !s.serverTls ? { act: 'auth-server' } : { act: 'auth-local' };
    }
    case 'PBSZ':
      if (!s.clientSecured) return { act: 'reply', text: '503 PBSZ needs AUTH TLS first\r\n' };
      if (!/^\d+$/.test(arg.trim())) return { act: 'reply', text: '501 PBSZ needs a number\r\n' };
      return s.serverTls ? { act: 'pass' } : { act: 'pbsz-local' };
    case 'PROT': {
      if (!s.clientSecured) return { act: 'reply', text: '503 PROT needs AUTH TLS first\r\n' };
      const level = arg.trim().toUpperCase();
      if (level === 'S' || level === 'E') return { act: 'reply', text: `536 Protection level ${level} not supported, use C or P\r\n` };
      if (level !== 'C' && level !== 'P') return { act: 'reply', text: '504 PROT needs C or P\r\n' };
      return s.serverTls ? { act: 'prot-forward', level } : { act: 'prot-local', level };
    }
    case 'CCC':
      if (!s.clientTls) return { act: 'reply', text: '533 Control channel is not protected\r\n' };
      return { act: 'ccc' };
    default:
      return { act: 'pass' };
  }
}
