// Logging as OpenBSD's ftp-proxy does it: a message goes out when its syslog priority <= the -D level;
// with -d as a plain line on stderr, else to syslog (facility daemon, ident "ftp-proxy", with the pid).
// `--log-format json` writes the same events as pino JSON lines (pino's numbers, syslog's names as label).
import { hostname } from 'node:os';
import { pino, type Logger as Pino } from 'pino';
import { type Level, LEVEL_NAMES, LOG_DEBUG, LOG_INFO } from './levels.js';
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
export const PINO_LEVELS: Record<string, number> = {
  emerg: 80,
  alert: 70,
  crit: 60,
  err: 50,
  warning: 40,
  notice: 35,
  info: 30,
  debug: 20,
};

/** pino's number back to the syslog priority. */
const PRIORITY_OF: Record<number, Level> = Object.fromEntries(LEVEL_NAMES.map((name, i) => [PINO_LEVELS[name]!, i as Level]));

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
    const prefix = this.prefix;
    const stream = {
      write(line: string): void {
        // pino writes the numeric level first ({"level":30,...}); the syslog priority follows from it.
        const level = PRIORITY_OF[Number(/^\{"level":(\d+)/.exec(line)?.[1])] ?? LOG_INFO;
        if (sys) sys.send(level, line.trimEnd());
        // Under journald a JSON line keeps its priority too (sd-daemon(3) prefix).
        else write(prefix ? `<${level}>${line}` : line);
      },
    };
    return pino(
      {
        level: LEVEL_NAMES[this.o.level] ?? 'notice',
        customLevels: PINO_LEVELS,
        useOnlyCustomLevels: true,
        // pino's conventions: numeric level (ours extend pino's scale), time in epoch ms, pid, hostname;
        // the syslog name rides along as label for readers that want words.
        base: { pid: process.pid, hostname: hostname() },
        timestamp: pino.stdTimeFunctions.epochTime,
        formatters: { level: (label, number) => ({ level: number, label }) },
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
