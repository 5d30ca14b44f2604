// What the policy makes of a server reply: the reply rules (accept, change, abort) and the FEAT rules
// (drop and insert features). Pure; FtpControl asks at the first line of each reply and, for FEAT, at
// each further line.
import { type Level, LOG_INFO, LOG_NOTICE, LOG_WARNING } from '../levels.js';
import { droppedByName, featureOf, featuresToInsert, keepFeature } from '../policy/feat.js';
import type { Policy } from '../policy/parse.js';
import { decideReply } from '../policy/replies.js';
import { vis } from './vis.js';

export interface ReplyLog {
  level: Level;
  message: string;
  event: string;
  fields?: Record<string, string | number>;
}

export type ReplyVerdict =
  /** Relay the reply (a change refused says so in `log`). */
  | { action: 'relay'; log?: ReplyLog }
  /** Swallow the reply's lines; `text` goes to the client when it ends. */
  | { action: 'change'; text: string; log: ReplyLog }
  /** Send `reply` and end the session. */
  | { action: 'abort'; reply: string; close: string; log: ReplyLog };

/** The verdict of every reply no rule names: one object, not one per reply (the hop). */
const RELAY: ReplyVerdict = Object.freeze({ action: 'relay' });

/** The reply rules for a reply `code` to `verb` (the client's, '' for the greeting). */
export function gateReply(policy: Policy, verb: string, code: string): ReplyVerdict {
  const d = decideReply(policy, verb, code);
  if (d.then.action !== 'abort' && d.then.action !== 'change') return RELAY;
  // The verb came from the client: escaped before it reaches a log line.
  const shown = verb ? vis(verb, 40) : 'the greeting';
  const command = vis(verb, 40);
  if (d.then.action === 'abort') {
    return {
      action: 'abort',
      reply: '421 Reply not allowed by policy, closing control connection.\r\n',
      close: `reply ${code} aborted by policy`,
      log: { level: LOG_NOTICE, message: `reply ${code} to ${shown} refused by policy, ending session (reply ${d.key} on policy line ${d.line})`, event: 'policy-abort', fields: { code, command } },
    };
  }
  if (d.then.action === 'change') {
    // A preliminary reply stays preliminary (and a final one final): the client counts replies too.
    if (code.startsWith('1') === d.then.code.startsWith('1')) {
      return {
        action: 'change',
        text: `${d.then.code} ${d.then.text}\r\n`,
        log: { level: LOG_INFO, message: `reply ${code} to ${shown} changed to ${d.then.code} by policy (reply ${d.key} on policy line ${d.line})`, event: 'policy-change', fields: { code, command, to: d.then.code } },
      };
    }
    return {
      action: 'relay',
      log: {
        level: LOG_WARNING,
        message: `reply ${code} to ${shown} not changed to ${d.then.code} (reply ${d.key} on policy line ${d.line}): a preliminary reply must stay preliminary`,
        event: 'policy-change-refused',
        fields: { code, command },
      },
    };
  }
  return RELAY;
}

export type TlsFeatures = 'none' | 'server' | 'proxy';

/** What the proxy lists when it terminates the client's TLS. */
const PROXY_TLS_FEATURES = ['AUTH TLS', 'PBSZ', 'PROT', 'CCC'];

/** One FEAT reply (211) on its way to the client: features dropped, inserts before its last line. */
export class FeatRewriter {
  private readonly seen = new Set<string>();

  /**
   * `tls`: who answers AUTH, PBSZ and PROT. none: nobody (they are dropped); server: the server
   * (passthrough: its lines stay); proxy: the proxy, which lists its own (Zorp does the same for
   * one-sided STARTTLS) in place of the server's.
   */
  constructor(
    private readonly policy: Policy,
    private readonly tls: TlsFeatures = 'none',
  ) {}

  private inserts(): string[] {
    // The proxy's own TLS features, but for those a rule names and drops (feat "AUTH TLS" drop).
    const own = this.tls === 'proxy' ? PROXY_TLS_FEATURES.filter((f) => !droppedByName(this.policy, f)) : [];
    return [...featuresToInsert(this.policy, this.seen), ...own];
  }

  /** A one-line 211 lists nothing; inserted features make it a multi-line one. Null: relay it as it is. */
  oneLine(line: Buffer): Buffer | null {
    const ins = this.inserts();
    if (!ins.length) return null;
    const first = line.toString('latin1').replace(/\r?\n$/, '').slice(4);
    return Buffer.from(`211-${first}\r\n${ins.map((f) => ` ${f}\r\n`).join('')}211 End\r\n`, 'latin1');
  }

  /** A further line (`end`: the last one): what the client gets instead, [] when the feature is dropped. */
  line(line: Buffer, text: string, end: boolean): Buffer[] {
    if (end) {
      const ins = this.inserts();
      return ins.length ? [Buffer.from(ins.map((f) => ` ${f}\r\n`).join(''), 'latin1'), line] : [line];
    }
    const f = featureOf(text);
    if (f !== null) {
      this.seen.add(f.toUpperCase());
      if (!keepFeature(this.policy, f, this.tls === 'server')) return [];
    }
    return [line];
  }
}
