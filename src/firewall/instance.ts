// Which running daemon owns a firewall object. A pid says nothing across PID namespaces: two
// host-network containers both run as pid 1 and share one firewall. So each instance draws a random id
// at start, writes it into every object it makes (owner tags, the `instances` set, iptables chain
// names, pf anchors), and proves it is alive by holding a unix socket named after it: on Linux the
// abstract `\0ftp-proxy/<id>`, which is per network namespace, like the firewall it guards, and which
// the kernel frees when the process dies, however it dies. Another instance sweeps an id only when
// it can bind that name itself (nobody holds it); any other answer counts as alive.
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** 8 hex digits: fits nft's 32-bit `mark` set type and keeps iptables chain names short. */
export const INSTANCE_ID = /^[0-9a-f]{8}$/;

export const newInstanceId = (): string => randomBytes(4).toString('hex');

/** The name an instance holds while it runs. Elsewhere than Linux a socket file (no abstract names). */
export function livenessName(id: string, platform: string = process.platform, dir = process.env.FTP_PROXY_RUNDIR ?? '/var/run'): string {
  return platform === 'linux' ? `\0ftp-proxy/${id}` : `${dir}/ftp-proxy.${id}.sock`;
}

export interface InstanceIdentity {
  /** This instance's id; final once claim() has resolved. */
  readonly id: string;
  /** Hold the liveness name (draws a new id in the unlikely case the name is taken). */
  claim(): Promise<void>;
  /** Let go of it (at exit; the kernel does it anyway when the process dies). */
  release(): void;
}

/** Is the instance with this id running? */
export type Liveness = (id: string) => Promise<boolean>;

function listen(name: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((c) => c.destroy());
    s.once('error', reject);
    s.listen(name, () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      s.unref(); // the liveness socket never keeps the process up
      resolve(s);
    });
  });
}

export class Instance implements InstanceIdentity {
  private server: Server | null = null;
  id: string;

  constructor(private readonly draw: () => string = newInstanceId) {
    this.id = draw();
  }

  async claim(): Promise<void> {
    if (this.server) return;
    for (let i = 0; ; i++) {
      try {
        this.server = await listen(livenessName(this.id));
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i >= 4) {
          throw new Error(`cannot hold the instance name ${livenessName(this.id).replace('\0', '@')}: ${(e as Error).message}`, { cause: e });
        }
        this.id = this.draw();
      }
    }
  }

  release(): void {
    this.server?.close();
    this.server = null;
    if (process.platform !== 'linux') {
      try {
        unlinkSync(livenessName(this.id));
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Alive unless proven dead. Linux: binding the abstract name succeeds only when nobody holds it
 * (EADDRINUSE: alive). Elsewhere: connecting to the socket file is refused (or the file is gone)
 * only when its process has died.
 */
export async function instanceAlive(id: string): Promise<boolean> {
  if (!INSTANCE_ID.test(id)) return true;
  const name = livenessName(id);
  if (process.platform === 'linux') {
    try {
      const s = await listen(name);
      await new Promise((r) => s.close(r));
      return false;
    } catch {
      return true;
    }
  }
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const c = connect(name, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code !== 'ECONNREFUSED' && e.code !== 'ENOENT'));
  });
}

/** Liveness of many ids at once, for the sweeps and `status`. */
export async function aliveIds(ids: Iterable<string>, alive: Liveness = instanceAlive): Promise<Map<string, boolean>> {
  const out = new Map<string, boolean>();
  for (const id of new Set(ids)) out.set(id, await alive(id));
  return out;
}
