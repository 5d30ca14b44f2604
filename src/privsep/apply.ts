// The privileged process's answer to one replace/clear request: checked whole (validate.ts), then done
// by the firewall backend, in order per session, and answered by id. A refused request is logged here
// and answered with the reason; the network process's stub turns any error into the session's 425.
import type { FirewallBackend } from '../firewall/backend.js';
import { PinholeConflict } from '../firewall/backend.js';
import { LOG_ERR } from '../levels.js';
import type { Log } from '../log.js';
import { localAddresses } from '../net/local-addresses.js';
import type { ToChild } from './protocol.js';
import { checkRequest, type PassthroughRanges, RequestRefused } from './validate.js';

export interface ApplyOptions {
  /** -r */
  port20: boolean;
  /** -m */
  maxHolders: number;
  isLocal: (address: string) => boolean;
  /** The policy's pass-through ranges now (src/privsep/validate.ts). */
  passthrough?: () => PassthroughRanges | null;
}

type Answer = Extract<ToChild, { id: number }>;

/**
 * Is this one of the host's addresses? Read from the kernel again only when an address is not among
 * the ones seen last time (an address added since), so the usual answer costs a lookup, not a file.
 */
export function localCache(read: () => Set<string> = localAddresses): (a: string) => boolean {
  let known = read();
  return (a) => {
    if (known.has(a) || /^127\./.test(a) || a === '::1') return true;
    known = read();
    return known.has(a);
  };
}

export class RequestHandler {
  /** Sessions holding pinholes now; and each session's requests in order. */
  private readonly holders = new Set<number>();
  private readonly queues = new Map<number, Promise<Answer>>();

  constructor(
    private readonly backend: FirewallBackend,
    private readonly o: ApplyOptions,
    private readonly log: Log,
  ) {}

  /** The answer to `m` (an object with a numeric id; anything else in it is checked). */
  handle(id: number, m: unknown): Promise<Answer> {
    let req;
    try {
      req = checkRequest(m, { instance: this.backend.instance, port20: this.o.port20, isLocal: this.o.isLocal, holders: this.holders, maxHolders: this.o.maxHolders, passthrough: this.o.passthrough?.() ?? null });
    } catch (e) {
      if (!(e instanceof RequestRefused)) throw e;
      this.log.log(LOG_ERR, `privsep: refused a request of the network process: ${e.message}`, { event: 'privsep-refused' });
      return Promise.resolve({ id, ok: false, error: `refused by the privileged process: ${e.message}` });
    }
    const r = req;
    const session = r.owner.session;
    if (r.op === 'replace') this.holders.add(session); // counted from now: a burst cannot pass -m
    const job = (this.queues.get(session) ?? Promise.resolve(null)).then(async (): Promise<Answer> => {
      try {
        if (r.op === 'replace') await this.backend.replace(r.owner, r.pinholes);
        else {
          await this.backend.clear(r.owner);
          this.holders.delete(session);
        }
        return { id, ok: true };
      } catch (e) {
        return { id, ok: false, error: e instanceof Error ? e.message : String(e), ...(e instanceof PinholeConflict ? { conflict: true } : {}) };
      }
    });
    this.queues.set(session, job);
    void job.then(() => {
      if (this.queues.get(session) === job) this.queues.delete(session);
    });
    return job;
  }
}
