// In-memory firewall for unit tests: holds pinholes per owner, records every call, and can be told to
// fail or to report port conflicts, so session logic is tested without a kernel.
import { type FirewallBackend, FirewallError, type Owner, ownerTag, type Pinhole, PinholeConflict } from './backend.js';

export type FakeCall = { op: 'init' | 'close' } | { op: 'replace'; owner: string; pinholes: Pinhole[] } | { op: 'clear'; owner: string };

export class FakeFirewall implements FirewallBackend {
  readonly name = 'fake';
  readonly instance = '0000fa4e';
  readonly calls: FakeCall[] = [];
  readonly live = new Map<string, Pinhole[]>();
  /** When set, the next operations fail with this message. */
  failWith: string | null = null;
  /** Proxy ports (toPort) that are reported as taken. */
  readonly taken = new Set<number>();
  /** Milliseconds each operation takes (to test ordering against slow firewalls). */
  delayMs = 0;

  async init(): Promise<void> {
    this.calls.push({ op: 'init' });
    await this.step();
  }

  async replace(owner: Owner, pinholes: Pinhole[]): Promise<void> {
    this.calls.push({ op: 'replace', owner: ownerTag(owner), pinholes });
    await this.step();
    const clash = pinholes.find((p) => this.taken.has(p.toPort));
    if (clash) throw new PinholeConflict(`port ${clash.toPort} in use`);
    this.live.set(ownerTag(owner), pinholes);
  }

  async clear(owner: Owner): Promise<void> {
    this.calls.push({ op: 'clear', owner: ownerTag(owner) });
    await this.step();
    this.live.delete(ownerTag(owner));
  }

  async close(): Promise<void> {
    this.calls.push({ op: 'close' });
    this.live.clear();
  }

  private async step(): Promise<void> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith) throw new FirewallError(this.failWith);
  }
}
