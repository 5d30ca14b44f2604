// The pidfile and, beside it, `<pidfile>.cmdline`: the command that started the daemon (NUL-separated,
// as /proc/<pid>/cmdline). The cron watchdog (scripts/ftp-proxy-watchdog) runs that command as root, so
// both files are written by root only, never through a symbolic link, mode 0644, and the watchdog refuses
// them when they are owned by anyone else. With --user the process started as root writes the command
// file and opens the pidfile before it drops its privileges; the daemon then writes its pid, and empties
// the file at a clean exit, through that descriptor alone (it could not replace or remove the file).
import { closeSync, constants, fchmodSync, ftruncateSync, lstatSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/** Set in the daemon's environment when its pidfile was opened for it (the descriptor's number). */
export const PIDFILE_FD_ENV = 'FTP_PROXY_PIDFILE_FD';

/**
 * Create `path` afresh and return it open for writing: a stale regular file is removed first, anything
 * else there (a symbolic link, a directory, a fifo) is an error. O_EXCL|O_NOFOLLOW: if someone puts a
 * link there between the removal and the open, the open fails instead of writing through it.
 */
export function createFresh(path: string): number {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    st = null; // absent: the usual case
  }
  if (st?.isSymbolicLink()) throw new Error(`${path} is a symbolic link: not followed`);
  if (st && !st.isFile()) throw new Error(`${path} is not a regular file`);
  if (st) unlinkSync(path);
  const fd = openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
  try {
    fchmodSync(fd, 0o644); // whatever the umask
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** `path` with exactly `text` in it, created as createFresh does. */
export function writeFresh(path: string, text: string): void {
  const fd = createFresh(path);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** The command file's text: each word NUL-terminated. */
export const cmdlineText = (cmdline: string[]): string => cmdline.map((a) => `${a}\0`).join('');

/** The daemon running as root: the command file, then the pidfile (the watchdog reads the pidfile first). */
export function writePidfile(path: string, cmdline: string[], pid = process.pid): void {
  writeFresh(`${path}.cmdline`, cmdlineText(cmdline));
  writeFresh(path, `${pid}\n`);
}

/** The daemon's pid through the descriptor root opened for it (the file's time says when it started). */
export function writePidFd(fd: number, pid = process.pid): void {
  ftruncateSync(fd, 0);
  writeSync(fd, `${pid}\n`, 0);
}

/** A clean exit through that descriptor: an empty pidfile says "stopped on purpose" to the watchdog. */
export function clearPidFd(fd: number): void {
  try {
    ftruncateSync(fd, 0);
  } catch {
    // nothing more we can do
  }
}

/** The pidfile's text, read without following a link; null when absent or not a regular file. */
function readPidfile(path: string): string | null {
  let fd;
  try {
    fd = openSync(path, O_RDONLY | O_NOFOLLOW);
  } catch {
    return null;
  }
  try {
    const buf = Buffer.alloc(64);
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** At a clean exit of a daemon that wrote its own pidfile: remove both files, if the pidfile is still ours. */
export function removePidfile(path: string, pid = process.pid): void {
  if (readPidfile(path)?.trim() !== String(pid)) return;
  for (const p of [path, `${path}.cmdline`]) {
    try {
      unlinkSync(p);
    } catch {
      // gone already, or we may not: the watchdog needs the pidfile gone or empty
      try {
        const fd = openSync(p, O_WRONLY | O_NOFOLLOW);
        ftruncateSync(fd, 0);
        closeSync(fd);
      } catch {
        // nothing more we can do
      }
    }
  }
}
