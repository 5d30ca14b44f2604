// Logging as OpenBSD's ftp-proxy does it: a message goes out when its syslog priority <= the -D level;
// with -d as a plain line on stderr, else to syslog (facility daemon, ident "ftp-proxy", with the pid).
// `--log-format json` writes the same events as pino JSON lines (level names are syslog's).
import { pino, type Logger as Pino } from 'pino';
import { type Level, LEVEL_NAMES, LOG_DEBUG } from './levels.js';
import { Syslog } from './syslog.js';

export type LogFormat = 'text' | 'json';
export type Fields = Record<string, string | number | boolean | undefined>;

export interface LogOptions {
  level: Level;
  format: LogFormat;
  /** Write to this instead of stderr (tests). */
  write?: (line: string) => void;
  /**
   * Prefix stderr lines with "<priority>", which journald reads (sd-daemon(3)); on by default when
   * stderr is the journal (JOURNAL_STREAM is set), so a -d daemon under systemd keeps its priorities.
   */
  priorityPrefix?: boolean;
}

// pino numbers grow with severity; syslog's shrink.
const PINO_LEVELS: Record<string, number> = {
  emerg: 80,
  alert: 70,
  crit: 60,
  err: 50,
  warning: 40,
  notice: 35,
  info: 30,
  debug: 20,
};

export class Log {
  private syslog: Syslog | null = null;
  private pino: Pino<string> | null = null;
  private write: (line: string) => void;
  private readonly prefix: boolean;

  constructor(private readonly o: LogOptions) {
    this.write = o.write ?? ((line) => process.stderr.write(line));
    this.prefix = o.priorityPrefix ?? (o.write === undefined && !!process.env.JOURNAL_STREAM);
    if (o.format === 'json') this.pino = this.makePino();
  }

  get level(): Level {
    return this.o.level;
  }

  enabled(level: Level): boolean {
    return level <= this.o.level;
  }

  log(level: Level, message: string, fields?: Fields): void {
    if (level > this.o.level) return;
    if (this.pino) {
      this.pino[LEVEL_NAMES[level]]?.(fields ?? {}, message);
      return;
    }
    if (this.syslog) this.syslog.send(level, message);
    else this.write(`${this.prefix ? `<${level}>` : ''}${message}\n`);
  }

  /**
   * From now on, messages go to syslog (after daemonizing). FTP_PROXY_SYSLOG names another socket than
   * /dev/log (a chroot's, or a test's).
   */
  useSyslog(ident = 'ftp-proxy'): void {
    this.syslog = new Syslog(ident, undefined, process.env.FTP_PROXY_SYSLOG ?? '/dev/log');
    if (this.pino) this.pino = this.makePino();
  }

  private makePino(): Pino<string> {
    const sys = this.syslog;
    const write = this.write;
    const stream = {
      write(line: string): void {
        if (!sys) {
          write(line);
          return;
        }
        // The level formatter below writes syslog's level names; map back to the priority.
        const name = /"level":"(\w+)"/.exec(line)?.[1] ?? 'info';
        const level = LEVEL_NAMES.indexOf(name as (typeof LEVEL_NAMES)[number]);
        sys.send(level < 0 ? 6 : level, line.trimEnd());
      },
    };
    return pino(
      {
        level: LEVEL_NAMES[this.o.level] ?? 'notice',
        customLevels: PINO_LEVELS,
        useOnlyCustomLevels: true,
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      stream,
    );
  }

  close(): void {
    this.pino?.flush();
    this.syslog?.close();
  }
}

/** A logger that keeps lines in memory (tests). */
export function memoryLog(level: Level = LOG_DEBUG): { log: Log; lines: string[] } {
  const lines: string[] = [];
  return { log: new Log({ level, format: 'text', write: (l) => lines.push(l.trimEnd()) }), lines };
}
