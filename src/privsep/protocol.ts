// The messages between the privileged process (P) and the network process (N), over the IPC channel of
// child_process (a socketpair; JSON, one message per request). N asks, P answers by id. P also hands N
// the listening sockets (as handles on the answers to `bind`) and tells it to stop, reload, or log its
// status line. Nothing else crosses.

/**
 * N -> P. `hello` first (N is listening on the channel), `ready` or `error` once started.
 * `replace`/`clear` are checked by validate.ts; `bind` names one of P's own -b addresses.
 */
export type ToParent =
  | { id: number; op: 'bind'; host: string; port: number }
  | { id: number; op: 'init' }
  | { id: number; op: 'replace'; owner: unknown; pinholes: unknown }
  | { id: number; op: 'clear'; owner: unknown }
  | { op: 'hello' }
  | { op: 'ready' }
  | { op: 'error'; message: string }
  /** The live session count when it changed (at most once a second), for systemd's STATUS=. */
  | { op: 'sessions'; count: number };

/** P -> N. A failed answer says whether the pinhole's key was taken (PinholeConflict: try another port). */
export type ToChild =
  | { op: 'hello'; name: string }
  | { id: number; ok: true; instance?: string }
  | { id: number; ok: false; error: string; conflict?: boolean }
  | { op: 'connection'; host: string }
  | { op: 'stop' }
  | { op: 'reload' }
  | { op: 'status' };

/** Set in N's environment: the syslog ident's process is a daemon (log to syslog, not stderr). */
export const SYSLOG_ENV = 'FTP_PROXY_PRIVSEP_SYSLOG';
