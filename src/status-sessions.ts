// What the kernel cannot tell `ftp-proxy status`: which control legs of a live session speak TLS, and
// whether its data goes through a kernel pinhole or through the proxy (the TLS relay, a data_mode join).
// The process that runs the sessions answers on the abstract unix name `ftp-proxy/<id>.sessions` (per
// network namespace, like the instance's own name) with one JSON line, then closes. It holds nothing a
// local user cannot already see in /proc/net/tcp except those two facts per session.
import { connect, createServer, type Server } from 'node:net';
import { livenessName } from './firewall/instance.js';

export type DataPath = 'none' | 'kernel' | 'relay' | 'join' | 'passthrough';

export interface SessionInfo {
  session: number;
  client: string;
  server: string;
  /** The control connection's legs under TLS now. */
  tls: { client: boolean; server: boolean };
  /** How the last data connection was set up. */
  data: DataPath;
}

export const sessionsName = (id: string): string => `${livenessName(id)}.sessions`;

/** The most a status reader gets: enough for any -m, bounded against a slow reader. */
const MAX_SESSIONS = 10_000;

export function serveSessions(id: string, snapshot: () => SessionInfo[]): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((c) => {
      c.on('error', () => undefined);
      c.setTimeout(2000, () => c.destroy());
      c.end(`${JSON.stringify(snapshot().slice(0, MAX_SESSIONS))}\n`);
    });
    s.once('error', reject);
    s.listen(sessionsName(id), () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      s.unref();
      resolve(s);
    });
  });
}

/** The sessions an instance reports, or null when it does not answer (an older version, or gone). */
export function readSessions(id: string, timeoutMs = 1000): Promise<SessionInfo[] | null> {
  return new Promise((resolve) => {
    const c = connect(sessionsName(id));
    let text = '';
    const done = (v: SessionInfo[] | null): void => {
      clearTimeout(t);
      c.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(null), timeoutMs);
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      text += d;
      if (text.length > 4 << 20) done(null);
    });
    c.on('error', () => done(null));
    c.on('end', () => {
      try {
        const v = JSON.parse(text) as unknown;
        done(Array.isArray(v) ? (v as SessionInfo[]) : null);
      } catch {
        done(null);
      }
    });
  });
}

const PATHS: Record<DataPath, string> = {
  none: 'no data connection yet',
  kernel: 'data through a kernel pinhole',
  relay: 'data through the TLS relay (PROT P)',
  join: 'data joined by the proxy (data_mode)',
  passthrough: 'TLS passed through, data through a range pinhole',
};

/** "session 3: 192.168.1.10 -> 198.51.100.21, TLS client and server legs, data through the TLS relay". */
export function describeSession(s: SessionInfo): string {
  const legs = s.data === 'passthrough' ? 'TLS end to end (not decrypted)' : s.tls.client && s.tls.server ? 'TLS client and server legs' : s.tls.client ? 'TLS client leg, plain server leg' : s.tls.server ? 'plain client leg, TLS server leg' : 'plain';
  return `session ${s.session}: ${s.client} -> ${s.server}, ${legs}, ${PATHS[s.data] ?? s.data}`;
}
