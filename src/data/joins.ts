// The joined data connections of one session (data_mode, src/data/join.ts): at most one at a time, each
// holding a slot of -m, set up either by connecting to both peers or by listening behind two local
// pinholes. The session asks for a join and gets a negotiation result; this file does the rest.
import { describePinhole, type FirewallBackend, localPinhole, type Owner, type Pinhole, randomProxyPort } from '../firewall/backend.js';
import type { DataTls, JoinRequest, NegotiationResult } from '../ftp/control.js';
import type { Family } from '../net/address.js';
import { DataJoin, type JoinStats, type JoinWrap, localAddressToward } from './join.js';
import { withFreeProxyPort } from './port-retry.js';

/** Seconds to connect to a peer, or for both peers to connect. */
const JOIN_CONNECT_TIMEOUT = 10;
const JOIN_LISTEN_TIMEOUT = 30;
/** A joined data connection with no byte either way for this long is closed (-t, if shorter). */
export const JOIN_IDLE_TIMEOUT = 600;

export interface JoinEnv {
  /** C, OS (the address the client dialled), S, and the family of the session. */
  client: string;
  originalServer: string;
  server: string;
  family: Family;
  /** P: the proxy's address on its connection to the server (known once it is up). */
  proxy(): string;
  firewall: FirewallBackend;
  owner: Owner;
  rdomains: { client: number; proxy: number } | null;
  random?: () => number;
  /** -t, seconds; 0 = none. */
  idleTimeout: number;
  /** The session has ended: a join that comes up now is closed at once. */
  ended(): boolean;
  /** A join takes a slot of -m: false when none is left; `released` once when it closes. */
  slot?: () => boolean;
  released?: () => void;
  /** The local pinholes of a listening join are in the firewall (described, for the log). */
  installed(description: string): void;
  /** A join closed. */
  joinEnded(stats: JoinStats): void;
  /** PROT P: the TLS handshakes of a data connection's legs (the session's TLS legs do them). */
  wrap?(tls: DataTls): JoinWrap;
}

export class SessionJoins {
  private current: DataJoin | null = null;

  constructor(private readonly env: JoinEnv) {}

  /** One joined data connection per session: a new negotiation ends the one before (its transfer is over). */
  close(why: string): void {
    this.current?.close(why);
    this.current = null;
  }

  /** The session ended: a transfer still running may finish within graceMs (DataJoin.finish). */
  finish(graceMs: number): void {
    this.current?.finish(graceMs);
  }

  /** Set up the join the state machine asked for; never throws (a failure is a negotiation result). */
  async run(j: JoinRequest): Promise<NegotiationResult> {
    if (this.env.slot && !this.env.slot()) return { ok: false, error: 'session limit (-m) reached: no room for a joined data connection' };
    let released = false;
    const release = (): void => {
      if (!released) this.env.released?.();
      released = true;
    };
    try {
      const wrap = j.tls && this.env.wrap ? this.env.wrap(j.tls) : undefined;
      if (j.tls && !wrap) throw new Error('PROT P without TLS legs');
      switch (j.kind) {
        case 'join-connect':
          return await this.connect(j, release, wrap);
        case 'join-listen':
          return await this.listen(release, wrap);
        case 'relay-passive':
        case 'relay-active':
          return await this.relay(j, release, wrap!);
      }
    } catch (e) {
      release();
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  /** The local pinholes of a join, in one transaction, as the session's pinholes now. */
  private async install(pins: Pinhole[]): Promise<void> {
    const { rdomains } = this.env;
    if (rdomains) for (const p of pins) p.rdomains = rdomains;
    await this.env.firewall.replace(this.env.owner, pins);
    this.env.installed(pins.map(describePinhole).join(', '));
  }

  /** This host's address toward the client: one routing lookup per session, not one per negotiation. */
  private toward: Promise<string> | null = null;
  private towardClient(): Promise<string> {
    this.toward ??= localAddressToward(this.env.client, this.env.family);
    // A failed lookup is not kept: the next negotiation asks again.
    this.toward.catch(() => (this.toward = null));
    return this.toward;
  }

  /** -t bounds a joined connection's silence too, up to JOIN_IDLE_TIMEOUT. */
  private get idleMs(): number {
    const t = this.env.idleTimeout;
    return (t > 0 ? Math.min(t, JOIN_IDLE_TIMEOUT) : JOIN_IDLE_TIMEOUT) * 1000;
  }

  /** Client PORT, server PASV: connect to both, outward only; no firewall change. */
  private async connect(j: Extract<JoinRequest, { kind: 'join-connect' }>, release: () => void, wrap?: JoinWrap): Promise<NegotiationResult> {
    const join = await DataJoin.connect(
      // From P, so the server sees the control connection's address (servers check it).
      { host: this.env.server, port: j.serverPort, localAddress: this.env.proxy() },
      { host: this.env.client, port: j.clientPort },
      JOIN_CONNECT_TIMEOUT * 1000,
      this.idleMs,
      wrap,
    );
    this.adopt(join, release);
    return { ok: true, proxyPort: 0 };
  }

  /**
   * PROT P (the proxy terminates the data TLS): one local pinhole to the proxy's listener for the peer
   * that connects (client PASV: the client, C -> OS:pp; client PORT: the server, S -> P:pp), then the
   * proxy dials the other peer itself. proxyPort is the port that peer is told.
   */
  private async relay(j: Extract<JoinRequest, { kind: 'relay-passive' | 'relay-active' }>, release: () => void, wrap: JoinWrap): Promise<NegotiationResult> {
    const { family, client, server } = this.env;
    const proxy = this.env.proxy();
    const passive = j.kind === 'relay-passive';
    const listenAddress = passive ? await this.towardClient() : proxy;
    const { join, port } = await DataJoin.listenThenDial(
      passive ? 'client' : 'server',
      { address: listenAddress, peer: passive ? client : server },
      passive ? { host: server, port: j.serverPort, localAddress: proxy } : { host: client, port: j.clientPort },
      JOIN_LISTEN_TIMEOUT * 1000,
      this.idleMs,
      wrap,
    );
    try {
      return await withFreeProxyPort(async (pp) => {
        const pin = passive
          ? localPinhole('client', family, client, this.env.originalServer, pp, listenAddress, port)
          : localPinhole('server', family, server, proxy, pp, proxy, port);
        await this.install([pin]);
        this.adopt(join, release);
        return { ok: true, proxyPort: pp };
      }, this.env.random);
    } catch (e) {
      join.close();
      throw e;
    }
  }

  /**
   * Client PASV, server PORT: listen on both sides and admit exactly one connection on each through
   * local pinholes (client: C -> OS:pp, server: S -> P:pp2), which the next negotiation or the end of the
   * session removes.
   */
  private async listen(release: () => void, wrap?: JoinWrap): Promise<NegotiationResult> {
    const { family, client, server } = this.env;
    const proxy = this.env.proxy();
    const towardClient = await this.towardClient();
    const { join, serverPort, clientPort } = await DataJoin.listen(
      { address: proxy, peer: server },
      { address: towardClient, peer: client },
      JOIN_LISTEN_TIMEOUT * 1000,
      this.idleMs,
      wrap,
    );
    try {
      return await withFreeProxyPort(async (pp) => {
        let pp2 = randomProxyPort(this.env.random);
        if (pp2 === pp) pp2 = pp === 65534 ? pp - 1 : pp + 1;
        const pins = [
          localPinhole('client', family, client, this.env.originalServer, pp, towardClient, clientPort),
          localPinhole('server', family, server, proxy, pp2, proxy, serverPort),
        ];
        await this.install(pins);
        this.adopt(join, release);
        return { ok: true, proxyPort: pp2, clientPort: pp };
      }, this.env.random);
    } catch (e) {
      join.close();
      throw e;
    }
  }

  private adopt(join: DataJoin, release: () => void): void {
    if (this.env.ended()) {
      join.close();
      release();
      return;
    }
    this.close('replaced by a new negotiation'); // one per session, whatever raced
    this.current = join;
    join.onEnd((st) => {
      release();
      if (this.current === join) this.current = null;
      this.env.joinEnded(st);
    });
  }
}
