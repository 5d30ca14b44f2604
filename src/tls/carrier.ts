// The stream a control connection's TLS runs on, between the TCP socket and Node's TLSSocket, so that
// CCC can hand the socket back in plain text. Node has no "unwrap": a TLSSocket on a raw socket owns it
// to the end, and bytes read past the client's close_notify would be lost inside OpenSSL. The carrier
// follows the TLS record framing of what it reads (5-byte headers: type 20-23, version 3.x, length);
// once told that the channel is being cleared, the first bytes that are not a record at a record
// boundary are the client's first plain command, and are kept back for the caller. Its end never ends
// the socket: TLSSocket.end() sends close_notify through it and stops there.
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

const HEADER = 5;

export class TlsCarrier extends Duplex {
  /** Bytes still to come of the current record's body; -1 while a header is incomplete. */
  private body = 0;
  private header: Buffer = Buffer.alloc(0);
  private clearing = false;
  private released = false;
  /** What came after the TLS records once the channel is cleared (the first plain bytes). */
  private plain: Buffer[] = [];
  private onPlain: ((rest: Buffer) => void) | null = null;
  private readonly onData = (d: Buffer): void => this.fromSocket(d);
  private readonly onEnd = (): void => {
    this.push(null);
  };

  constructor(readonly socket: Socket) {
    super({ allowHalfOpen: true });
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  /**
   * CCC: from now on, the first non-record bytes at a record boundary end the TLS stream; `plain` gets
   * them (and everything after them goes to the socket's next reader, once released).
   */
  clear(plain: (rest: Buffer) => void): void {
    this.clearing = true;
    this.onPlain = plain;
    if (this.plain.length) this.finishClear();
  }

  /** The client's close_notify came (the TLS stream ended): cleared, with no plain byte yet. */
  cleared(): void {
    if (this.clearing && this.onPlain) this.finishClear();
  }

  /** Detach from the socket (after CCC): the socket is the caller's again, paused. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('end', this.onEnd);
    this.socket.pause();
  }

  private fromSocket(d: Buffer): void {
    if (this.released) return;
    if (this.plain.length) {
      this.plain.push(d);
      return;
    }
    let i = 0;
    while (i < d.length) {
      if (this.body > 0) {
        const n = Math.min(this.body, d.length - i);
        this.body -= n;
        i += n;
        continue;
      }
      // At a record boundary (or inside a header).
      if (this.header.length === 0 && this.clearing && !isRecordStart(d[i]!)) {
        this.forward(d.subarray(0, i));
        this.plain.push(d.subarray(i));
        this.finishClear();
        return;
      }
      const need = HEADER - this.header.length;
      const part = d.subarray(i, i + need);
      this.header = Buffer.concat([this.header, part]);
      i += part.length;
      if (this.header.length === HEADER) {
        this.body = this.header.readUInt16BE(3);
        this.header = Buffer.alloc(0);
      }
    }
    this.forward(d);
  }

  private forward(d: Buffer): void {
    if (d.length && !this.push(d)) this.socket.pause();
  }

  private finishClear(): void {
    if (!this.onPlain || this.released) return;
    const rest = Buffer.concat(this.plain);
    this.plain = [];
    const f = this.onPlain;
    this.onPlain = null;
    this.release();
    // The TLS stream ends here whether or not the client sent its close_notify.
    this.push(null);
    f(rest);
  }

  override _read(): void {
    if (!this.released) this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.released || this.socket.destroyed) {
      cb();
      return;
    }
    this.socket.write(chunk, cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    cb(); // close_notify has been written; the socket stays open for plain text
  }

  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void {
    // The TLS layer is done with us; the socket is destroyed only while it still carries TLS.
    if (!this.released && !this.clearing) this.socket.destroy();
    cb(e);
  }
}

/** A TLS record starts with a content type 20..23 (change_cipher_spec, alert, handshake, data). */
const isRecordStart = (b: number): boolean => b >= 20 && b <= 23;
