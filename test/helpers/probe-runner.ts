// A libnftables stand-in for unit tests of the nftables backend with its netlink fast path: it records
// the scripts it is given and lists the fast path's self-test probe as the fake kernel was sent it (as
// libnftables would read it back), or, with probeOk false, with a wrong value.
import { parseAttrs, parseMessages } from '../../src/firewall/nfnl/netlink.js';
import type { NftRunner } from '../../src/firewall/nft-runner.js';

/** The port of the probe element in the batch that wrote it. */
export function probePort(batch: Buffer): number {
  const m = parseMessages(batch)[1]!;
  const list = parseAttrs(m.payload.subarray(4)).find((a) => a.type === 3)!;
  const elem = parseAttrs(list.payload)[0]!;
  const key = parseAttrs(elem.payload).find((a) => a.type === 1)!;
  return parseAttrs(key.payload)[0]!.payload.readUInt16BE(8);
}

export class ProbeRunner implements NftRunner {
  readonly kind = 'libnftables' as const;
  readonly scripts: string[] = [];
  /** The next script matching this fails as libnftables reports a missing object. */
  failNext: RegExp | null = null;
  constructor(
    private readonly sent: Buffer[],
    private readonly probeOk = true,
  ) {}
  async run(script: string): Promise<string> {
    if (this.failNext?.test(script)) {
      this.failNext = null;
      throw new Error('Could not process rule: No such file or directory');
    }
    this.scripts.push(script);
    return '';
  }
  async json(command: string): Promise<unknown> {
    if (!command.startsWith('list map')) return { nftables: [] };
    const port = probePort(this.sent.at(-1)!);
    const val = { concat: ['0.0.0.0', '0.0.0.0', port] };
    return { nftables: [{ map: { name: 'dnat4', elem: [[{ elem: { val, timeout: 10, expires: 9, comment: 'ftp-proxy self-test' } }, { concat: ['0.0.0.0', this.probeOk ? port : 1] }]] } }] };
  }
  close(): void {}
}
