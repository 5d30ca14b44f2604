// What the FTP state machine (control.ts) and the session (src/session.ts) say to each other: the actions
// the machine emits, the negotiations and joins it asks for, and what the session reports back. Types
// only; the machine stays pure and the session carries these out.
import type { Level } from '../levels.js';
import type { TlsClientMode, TlsServerMode } from '../policy/tls.js';

export interface TlsConfig {
  client: TlsClientMode;
  server: TlsServerMode;
  /** Port 990 (implicit FTPS): the session starts that leg's TLS before the first line. */
  clientImplicit: boolean;
  serverImplicit: boolean;
  /** tls_client passthrough: the server's passive range (none known: AUTH is refused). */
  passthroughPorts?: { low: number; high: number };
}

/** Which legs of a data connection speak TLS (PROT P on that leg): any true means the userland relay. */
export interface DataTls {
  client: boolean;
  server: boolean;
}

export type Negotiation =
  | { kind: 'passive'; command: 'PASV' | 'EPSV'; serverPort: number }
  | { kind: 'active'; command: 'PORT' | 'EPRT'; clientPort: number }
  /** tls_client passthrough after the server's 234: one pinhole for the server's passive range. */
  | { kind: 'passthrough'; low: number; high: number };

export type LogFields = Record<string, string | number>;

/**
 * A data connection the session joins itself, for data_mode passive/active when the client asked for the
 * other mode: connect to the client's PORT and to the server's passive port, or listen for both.
 */
export type JoinRequest =
  | { kind: 'join-connect'; command: 'PORT' | 'EPRT'; clientPort: number; serverPort: number; tls?: DataTls }
  | { kind: 'join-listen'; command: 'PASV' | 'EPSV'; tls?: DataTls }
  /** PROT P, client PASV/EPSV: listen for the client (the port it is told), connect to the server's port. */
  | { kind: 'relay-passive'; command: 'PASV' | 'EPSV'; serverPort: number; tls: DataTls }
  /** PROT P, client PORT/EPRT: listen for the server (the port it is told), connect to the client's port. */
  | { kind: 'relay-active'; command: 'PORT' | 'EPRT'; clientPort: number; tls: DataTls };

/** For join-listen: proxyPort is the port the server is told, clientPort the one the client is told. */
export type NegotiationResult = { ok: true; proxyPort: number; clientPort?: number } | { ok: false; error: string };

export type Action =
  | { type: 'toServer'; data: Buffer }
  | { type: 'toClient'; data: Buffer }
  /** Install the pinhole for this negotiation, then call negotiationDone(id, result). */
  | { type: 'negotiate'; id: number; negotiation: Negotiation }
  /** Set up a data connection the proxy joins itself, then call negotiationDone(id, result). */
  | { type: 'join'; id: number; join: JoinRequest }
  /** The server refused the command a join was for: close its listeners. */
  | { type: 'joinCancel' }
  /** `event` and `fields` are for --log-format json; the text format prints only the message. */
  | { type: 'log'; level: Level; message: string; event: string; fields?: LogFields }
  /** Start TLS on a leg (after what was sent before it), or end it (CCC); then call tlsDone(id, result). */
  | { type: 'tls'; id: number; leg: 'client' | 'server'; op: 'start' | 'stop' }
  /** tls_client passthrough: from now on the control bytes are relayed untouched, both ways. */
  | { type: 'blind' }
  /** End the session (after flushing what was sent). */
  | { type: 'close'; reason: string };

export type TlsResult = { ok: true } | { ok: false; error: string };

