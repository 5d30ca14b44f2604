/** A start-up failure: the message goes to stderr as "ftp-proxy: <message>" and the exit status is 1. */
export class StartupError extends Error {
  override name = 'StartupError';
}
