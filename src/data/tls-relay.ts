// The userland relay of one PROT P data connection: the client leg's data socket and the server leg's,
// either of them TLS (both terminated by the proxy) or plain (a one-sided configuration: TLS with the
// client, plain to the server, or the reverse). Bytes are counted each way; pipe() gives backpressure
// both ways and carries one side's end (TLS close_notify, then FIN) to the other.
import type { Duplex } from 'node:stream';

export interface RelayStats {
  /** Bytes from the server to the client, and the other way (plaintext, after TLS). */
  toClient: number;
  toServer: number;
  /** Set when the relay ended on an error: which side and what, with the caller's context. */
  error?: string;
}

export interface RelayOptions {
  /** What an error says first, e.g. "session 12 data". */
  context?: string;
  /** After one side ended, how long the other may take to close before it is cut. */
  closeGraceMs?: number;
  /** No byte either way for this long ends the relay with an error (0: never). */
  idleMs?: number;
}

export interface Relay {
  /** Settles once both sockets are closed; never rejects (see RelayStats.error). */
  done: Promise<RelayStats>;
  stats: RelayStats;
  /** Cut both sides now (the control session ended, a policy refused the transfer). */
  abort(reason: string): void;
}

export function relay(client: Duplex, server: Duplex, opts: RelayOptions = {}): Relay {
  const stats: RelayStats = { toClient: 0, toServer: 0 };
  const prefix = opts.context ? `${opts.context}: ` : '';
  const grace = opts.closeGraceMs ?? 5000;
  let open = 2;
  let finished = false;
  let graceTimer: NodeJS.Timeout | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let resolveDone!: (s: RelayStats) => void;
  const done = new Promise<RelayStats>((r) => (resolveDone = r));

  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(graceTimer);
    clearTimeout(idleTimer);
    resolveDone(stats);
  };
  const abort = (reason: string) => {
    stats.error ??= `${prefix}${reason}`;
    client.destroy();
    server.destroy();
  };
  const touch = () => {
    if (!opts.idleMs) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => abort(`no data for ${opts.idleMs! / 1000} s`), opts.idleMs);
    idleTimer.unref();
  };

  for (const [sock, side] of [
    [client, 'client'],
    [server, 'server'],
  ] as const) {
    sock.on('error', (e: Error & { code?: string }) => abort(`${side} side: ${e.code ? `${e.code}: ` : ''}${e.message}`));
    sock.once('end', () => {
      // The other side has `grace` to finish writing and close after this end reached it.
      graceTimer ??= setTimeout(() => abort(`${side === 'client' ? 'server' : 'client'} side did not close within ${grace / 1000} s`), grace);
      graceTimer.unref();
    });
    sock.once('close', () => {
      if (--open === 0) finish();
      // A side closed without a clean end (RST, destroy): nothing more can pass.
      else if (!sock.readableEnded) abort(`${side} side closed before its end of stream`);
    });
  }
  client.on('data', (d: Buffer) => {
    stats.toServer += d.length;
    touch();
  });
  server.on('data', (d: Buffer) => {
    stats.toClient += d.length;
    touch();
  });
  touch();
  server.pipe(client);
  client.pipe(server);
  return { done, stats, abort };
}
