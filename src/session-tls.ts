// The TLS legs of one FTP session: the proxy as TLS client to the server (src/tls/server-leg.ts) and as
// TLS server to the client (src/tls/client-leg.ts), with the certificate the client is shown, the check
// of the server's certificate, and the handshakes of PROT P data connections. Session decides when
// (the state machine's 'tls' actions); this file does how.
import type { X509Certificate } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { DataTls } from './ftp/control.js';
import { vis } from './ftp/vis.js';
import type { JoinWrap } from './data/join.js';
import type { TlsMaterial } from './tls/certs-policy.js';
import { type Carried, ClientLeg } from './tls/client-leg.js';
import { ServerLeg, tlsInfo, type TlsInfo } from './tls/server-leg.js';

export interface SessionTlsOptions {
  material: TlsMaterial;
  /** The server as the session reaches it (the address goes into minted certificates). */
  server: { address: string; port: number };
  /** "session 12", first in every error. */
  context: string;
  /** Each handshake's result, for the INFO log line. */
  onInfo(leg: 'client' | 'server' | 'client data' | 'server data', info: TlsInfo): void;
}

/** A client handshake that worked, and a reason to end the session at once if the server's name was wrong. */
export interface ClientStart {
  socket: TLSSocket;
  /** tls_server_verify: the server's certificate does not name what the client asked for. */
  refusal?: string;
}

export class SessionTls {
  private serverLeg: ServerLeg | null = null;
  private clientLeg: ClientLeg | null = null;
  /** The server's certificate, kept from its handshake (the socket forgets it once it closes). */
  private serverCert: X509Certificate | undefined;
  /** The check for a plain client was made (checkForPlainClient). */
  private plainChecked = false;

  constructor(private readonly o: SessionTlsOptions) {}

  /** TLS to the server on the control connection: after its 234, or at once on port 990. */
  async startServer(socket: Socket): Promise<TLSSocket> {
    const m = this.o.material;
    this.serverLeg = await ServerLeg.startControl(socket, {
      host: this.o.server.address,
      port: this.o.server.port,
      verify: m.serverVerify,
      // The chain now; the name once the client's SNI is known (checkName), since a minted certificate
      // will carry that name.
      nameCheck: false,
      ...(m.serverCa ? { ca: m.serverCa } : {}),
      context: this.o.context,
    });
    this.serverCert = this.serverLeg.control.getPeerX509Certificate();
    this.o.onInfo('server', this.serverLeg.info);
    return this.serverLeg.control;
  }

  /**
   * tls_server_verify: the refusal when the server's certificate does not name `name` (the client's SNI,
   * else the server's address); undefined when it does or nothing is checked.
   */
  private checkName(name: string | undefined): string | undefined {
    if (!this.serverLeg || !this.o.material.serverVerify) return undefined;
    const cert = this.serverCert;
    const want = name ?? this.o.server.address;
    // RFC 6125 matching, as tls.checkServerIdentity does it (IP SANs for an address, wildcards for names).
    const ok = cert && (isIP(want) ? cert.checkIP(want) : cert.checkHost(want));
    return ok ? undefined : `the server's certificate does not name ${vis(want, 80)}`;
  }

  /**
   * A client that sends commands in the clear while the server leg is TLS (tls_server require): the
   * server's certificate must name the server's address, as no SNI will come. Once; the refusal or none.
   */
  checkForPlainClient(): string | undefined {
    if (this.plainChecked || !this.serverLeg || this.clientLeg) return undefined;
    this.plainChecked = true;
    return this.checkName(undefined);
  }

  /** TLS with the client on the control connection, after the proxy's 234 (or at once on port 990). */
  async startClient(stream: Carried): Promise<ClientStart> {
    const m = this.o.material;
    const serverCert = this.serverCert?.raw;
    // The name the client asked for (its SNI) is checked when it comes; without one, the address.
    let refusal: string | undefined;
    let named = false;
    if (m.minter && serverCert) {
      const minter = m.minter;
      const address = this.o.server.address;
      const base = await minter.mint({ serverCert, address });
      this.clientLeg = new ClientLeg({
        secureContext: base.context,
        context: this.o.context,
        sniCallback: (servername, cb) => {
          named = true;
          refusal = this.checkName(servername);
          minter.mint({ serverCert, sni: servername, address }).then(
            (c) => cb(null, c.context),
            (e: Error) => cb(e),
          );
        },
      });
    } else if (m.identity) {
      this.clientLeg = new ClientLeg({ credentials: { key: m.identity.keyPem, cert: m.identity.chainPem }, context: this.o.context });
    } else {
      throw new Error(m.minter ? 'no certificate to show the client: minting one needs TLS with the server first (tls_server forward or require)' : 'no certificate to show the client (tls_certificate)');
    }
    const socket = await this.clientLeg.startControl(stream);
    if (!named) refusal = this.checkName(undefined);
    this.o.onInfo('client', tlsInfo(socket));
    return { socket, ...(refusal ? { refusal } : {}) };
  }

  /** The handshakes of a PROT P data connection, for the join (each leg that has PROT P). */
  dataWrap(tls: DataTls): JoinWrap {
    const wrap: JoinWrap = {};
    if (tls.client) {
      wrap.client = async (s: Socket): Promise<Duplex> => {
        if (!this.clientLeg) throw new Error('PROT P with the client without TLS on its control connection');
        const r = await this.clientLeg.acceptData(s);
        this.o.onInfo('client data', tlsInfo(r.socket));
        return r.socket;
      };
    }
    if (tls.server) {
      wrap.server = async (s: Socket): Promise<Duplex> => {
        if (!this.serverLeg) throw new Error('PROT P with the server without TLS on its control connection');
        const r = await this.serverLeg.connectData(s);
        this.o.onInfo('server data', tlsInfo(r.socket));
        return r.socket;
      };
    }
    return wrap;
  }

  close(): void {
    this.clientLeg?.close();
  }
}
