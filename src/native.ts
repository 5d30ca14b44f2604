// The few C calls the daemon makes, typed once, through koffi: libc's socket calls (syslog's datagram
// socket, SO_ORIGINAL_DST, IP_TRANSPARENT, OpenBSD's rdomains) and libnftables. Each library loads on
// first use, so a host without one (no libnftables, no koffi build) fails only what needs it.
import { createRequire } from 'node:module';

// koffi's functions take and return `any`; each call is given its real signature below.
type Koffi = typeof import('koffi');
type Call<A extends unknown[], R> = (...args: A) => R;
type AsyncCall<A extends unknown[], R> = Call<A, R> & { async: (...args: [...A, (err: unknown, result: R) => void]) => void };

let koffi: Koffi | null = null;
function loadKoffi(): Koffi {
  if (!koffi) koffi = createRequire(import.meta.url)('koffi') as Koffi;
  return koffi;
}

/** The C library's names to try, in order. `null` means the process's own symbols (dlopen(NULL)). */
export function libcNames(platform: string, arch: string): (string | null)[] {
  if (platform === 'openbsd') return ['libc.so', null];
  // glibc, then musl (Alpine has no libc.so.6: its libc is the dynamic loader, libc.musl-<arch>.so.1),
  // then whatever C library node itself was linked with.
  const musl: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', arm: 'armhf', ia32: 'x86', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return ['libc.so.6', `libc.musl-${musl[arch] ?? arch}.so.1`, null];
}

/** The first of `names` that loads (and has `probe`); the errors of all when none does. */
export function loadFirst<L>(names: (string | null)[], load: (name: string | null) => L): { lib: L; name: string | null } {
  const errors: string[] = [];
  for (const name of names) {
    try {
      return { lib: load(name), name };
    } catch (e) {
      errors.push(`${name ?? '(own symbols)'}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  throw new Error(`no C library loaded (${errors.join('; ')})`);
}

export interface Libc {
  /** Which library answered (null: the process's own symbols). */
  readonly name: string | null;
  socket: Call<[domain: number, type: number, protocol: number], number>;
  connect: Call<[fd: number, addr: Buffer, len: number], number>;
  send: Call<[fd: number, buf: Buffer, len: number, flags: number], number>;
  /** nftables' netlink fast path (src/firewall/nfnl/sys.ts): bind, and recv into a caller's buffer (no copy). */
  bind: Call<[fd: number, addr: Buffer, len: number], number>;
  recv: Call<[fd: number, buf: Buffer, len: number, flags: number], number>;
  /** The system's text for an errno, as nft prints it ("File exists"). */
  strerror: Call<[errnum: number], string>;
  close: Call<[fd: number], number>;
  getsockopt: Call<[fd: number, level: number, name: number, val: Buffer, len: Uint32Array], number>;
  setsockopt: Call<[fd: number, level: number, name: number, val: Buffer, len: number], number>;
  /** errno of the last call made through koffi on this thread. */
  errno(): number;
  /** OpenBSD only: the process's routing table. */
  getrtable?: Call<[], number>;
}

let libcCache: Libc | null | undefined;

/** libc, or null when it cannot be loaded (no koffi for this platform); tried once. */
export function libc(): Libc | null {
  if (libcCache !== undefined) return libcCache;
  try {
    const k = loadKoffi();
    const { lib: l, name } = loadFirst(libcNames(process.platform, process.arch), (n) => {
      const h = k.load(n);
      h.func('int close(int fd)'); // throws when the symbol is missing: try the next name
      return h;
    });
    const c: Libc = {
      name,
      socket: l.func('int socket(int domain, int type, int protocol)'),
      connect: l.func('int connect(int fd, const uint8_t *addr, uint32_t len)'),
      send: l.func('intptr_t send(int fd, const uint8_t *buf, size_t len, int flags)'),
      bind: l.func('int bind(int fd, const uint8_t *addr, uint32_t len)'),
      recv: l.func('intptr_t recv(int fd, void *buf, size_t len, int flags)'),
      strerror: l.func('const char *strerror(int errnum)'),
      close: l.func('int close(int fd)'),
      getsockopt: l.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)'),
      setsockopt: l.func('int setsockopt(int fd, int level, int name, const uint8_t *val, uint32_t len)'),
      errno: () => k.errno(),
    };
    if (process.platform === 'openbsd') c.getrtable = l.func('int getrtable()');
    libcCache = c;
  } catch {
    libcCache = null;
  }
  return libcCache;
}

export interface LibNftables {
  ctxNew: Call<[flags: number], unknown>;
  ctxFree: Call<[ctx: unknown], void>;
  bufferOutput: Call<[ctx: unknown], number>;
  bufferError: Call<[ctx: unknown], number>;
  getOutput: Call<[ctx: unknown], string | null>;
  getError: Call<[ctx: unknown], string | null>;
  setOutputFlags: Call<[ctx: unknown, flags: number], void>;
  /** Runs on koffi's worker thread with `.async`, so the event loop never waits on netlink. */
  run: AsyncCall<[ctx: unknown, script: string], number>;
}

export const NFT_CTX_OUTPUT_JSON = 1 << 4;

let nftCache: LibNftables | null = null;

/** libnftables.so.1; throws (with the loader's message) when it is not installed. */
export function libnftables(): LibNftables {
  if (nftCache) return nftCache;
  const l = loadKoffi().load('libnftables.so.1');
  nftCache = {
    ctxNew: l.func('void *nft_ctx_new(uint32_t flags)'),
    ctxFree: l.func('void nft_ctx_free(void *ctx)'),
    bufferOutput: l.func('int nft_ctx_buffer_output(void *ctx)'),
    bufferError: l.func('int nft_ctx_buffer_error(void *ctx)'),
    getOutput: l.func('const char *nft_ctx_get_output_buffer(void *ctx)'),
    getError: l.func('const char *nft_ctx_get_error_buffer(void *ctx)'),
    setOutputFlags: l.func('void nft_ctx_output_set_flags(void *ctx, uint32_t flags)'),
    run: l.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)') as AsyncCall<[ctx: unknown, script: string], number>,
  };
  return nftCache;
}
