// The network process's firewall: a stub that asks the privileged process (src/privsep/parent.ts) over
// the IPC channel and waits for its answer. It also asks it for the listening sockets (bind). Errors
// come back as the backends' own: a taken key is a PinholeConflict (the session draws another port),
// anything else a FirewallError (the session answers 425 and logs it), so sessions cannot tell the
// difference.
import type { Server } from 'node:net';
import { StartupError } from '../errors.js';
import { FirewallError, type FirewallBackend, type Owner, type Pinhole, PinholeConflict } from '../firewall/backend.js';
import type { ToChild, ToParent } from './protocol.js';

/** The IPC end (process in the network process; a fake in unit tests). */
export interface Channel {
  send(message: ToParent): unknown;
}

type Answer = Extract<ToChild, { id: number }>;
type Distributive<T> = T extends unknown ? Omit<T, 'id'> : never;
/** A request before the stub numbers it. */
type Ask = Distributive<Extract<ToParent, { id: number }>>;

export class PrivsepFirewall implements FirewallBackend {
  /** The privileged process's backend ("nftables", "iptables"): it says so in its hello. */
  name = 'firewall';
  instance = '';
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (a: Answer & { ok: true }, handle?: unknown) => void; reject: (e: Error) => void }>();
  private gone: string | null = null;

  constructor(private readonly channel: Channel) {}

  /** An answer from the privileged process (with a listening socket, for bind). */
  answer(m: Answer, handle?: unknown): void {
    const w = this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (m.ok) w.resolve(m, handle);
    else w.reject(m.conflict ? new PinholeConflict(m.error) : new FirewallError(m.error));
  }

  /** The channel closed: nothing will be answered any more. */
  disconnected(): void {
    this.gone = 'the privileged process is gone';
    for (const w of this.waiting.values()) w.reject(new FirewallError(this.gone));
    this.waiting.clear();
  }

  private ask(q: Ask): Promise<{ answer: Answer & { ok: true }; handle?: unknown }> {
    if (this.gone) return Promise.reject(new FirewallError(this.gone));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve: (answer, handle) => resolve({ answer, handle }), reject });
      try {
        this.channel.send({ ...q, id } as ToParent);
      } catch (e) {
        this.waiting.delete(id);
        reject(new FirewallError(`cannot reach the privileged process: ${(e as Error).message}`));
      }
    });
  }

  /** One of the -b listeners, bound (and made transparent) by the privileged process. */
  async bind(host: string, port: number): Promise<Server> {
    try {
      const { handle } = await this.ask({ op: 'bind', host, port });
      if (!handle) throw new Error(`no listening socket for ${host} port ${port}`);
      return handle as Server;
    } catch (e) {
      throw new StartupError((e as Error).message);
    }
  }

  async init(): Promise<void> {
    const { answer } = await this.ask({ op: 'init' });
    this.instance = answer.instance ?? '';
  }

  async replace(owner: Owner, pinholes: Pinhole[]): Promise<void> {
    await this.ask({ op: 'replace', owner, pinholes });
  }

  async clear(owner: Owner): Promise<void> {
    await this.ask({ op: 'clear', owner });
  }

  /** The privileged process removes everything of this instance once this process has exited. */
  async close(): Promise<void> {}
}
