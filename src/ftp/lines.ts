// Control-channel line framing, as OpenBSD's ftp-proxy does it: a line is everything up to and including
// "\n" (a "\r" before it stays in the line, so CRLF is forwarded byte for byte), at most MAX_LINE_BYTES bytes.
// 500 buffered bytes without a "\n" is an error; so is a NUL byte anywhere in a line.

/** Bytes of one control-channel line, its line ending included (OpenBSD's buffer): command or reply. */
export const MAX_LINE_BYTES = 500;

export type LineEvent = { kind: 'line'; line: Buffer } | { kind: 'error'; error: 'too-long' | 'nul' };

export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failed = false;

  constructor(private readonly maxLine: number = MAX_LINE_BYTES) {}

  /** Bytes buffered that do not yet form a whole line. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** Take the bytes buffered past the last whole line (the stream changes hands: TLS, pass-through). */
  takeRest(): Buffer {
    const rest = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    return rest;
  }

  /**
   * Feed bytes; returns the complete lines they finish, in order. After an error nothing more is
   * returned: the session is over.
   */
  push(chunk: Buffer): LineEvent[] {
    if (this.failed) return [];
    const out: LineEvent[] = [];
    const length = chunk.length;
    // The first NUL of the chunk, found once: a line that reaches it fails, so no later line needs
    // another search (a chunk of many short lines stays one scan, not one per line).
    const nul = chunk.indexOf(0);
    let start = 0;
    while (start < length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? length : nl + 1;
      const size = end - start;
      // OpenBSD checks each byte as it is buffered, so a NUL ends the session before its line is complete.
      if (nul !== -1 && nul < end && nul - start < this.maxLine - this.pendingBytes) return this.fail(out, 'nul');
      if (this.pendingBytes + size > this.maxLine || (nl === -1 && this.pendingBytes + size >= this.maxLine)) {
        // OpenBSD: a full 500-byte buffer without "\n" is "too long"; a line of exactly 500 bytes
        // including its "\n" is accepted.
        return this.fail(out, 'too-long');
      }
      if (nl === -1) {
        this.pending.push(chunk.subarray(start, end));
        this.pendingBytes += size;
        break;
      }
      let line: Buffer;
      if (this.pendingBytes === 0) {
        // A copy, not a view: the line outlives the chunk. One buffer, no intermediate view (the hop).
        line = Buffer.allocUnsafe(size);
        chunk.copy(line, 0, start, end);
      } else {
        line = Buffer.concat([...this.pending, chunk.subarray(start, end)]);
        this.pending = [];
        this.pendingBytes = 0;
      }
      out.push({ kind: 'line', line });
      start = end;
    }
    return out;
  }

  private fail(out: LineEvent[], error: 'too-long' | 'nul'): LineEvent[] {
    this.failed = true;
    this.pending = [];
    this.pendingBytes = 0;
    out.push({ kind: 'error', error });
    return out;
  }
}
