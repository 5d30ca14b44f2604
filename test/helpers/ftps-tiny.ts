// A tiny TLS-terminating FTP server for client-leg tests, made of the proxy's own parts: ClientLeg for
// the control and data TLS, relay() for the data (its other side a plain loopback "origin" that serves
// the file: the one-sided configuration, TLS to the client only). It records, per data connection,
// whether the client resumed its control session. Just enough FTP for curl and ftplib; not the proxy.
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { SecureVersion } from 'node:tls';
import { relay, type RelayStats } from '../../src/data/tls-relay.js';
import { ClientLeg } from '../../src/tls/client-leg.js';

export interface DataRecord {
  command: string;
  tls: boolean;
  reused: boolean;
  version?: string;
  stats?: RelayStats;
}

export interface TinyServer {
  port: number;
  data: DataRecord[];
  /** Control handshakes: TLS version of each. */
  controls: string[];
  errors: string[];
  close(): Promise<void>;
}

export async function tinyFtpsServer(opts: {
  cert: string;
  key: string;
  files: Record<string, Buffer>;
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  /** Implicit FTPS: TLS from the first byte. */
  implicit?: boolean;
}): Promise<TinyServer> {
  const data: DataRecord[] = [];
  const controls: string[] = [];
  const errors: string[] = [];
  const open = new Set<Socket>();
  const extra: Server[] = [];

  // The "origin": plain TCP, sends the file named in its first line and ends.
  const origin = createServer((s) => {
    open.add(s);
    s.on('error', () => undefined);
    s.once('data', (d) => s.end(opts.files[d.toString().trim()] ?? Buffer.alloc(0)));
  });
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const originPort = (origin.address() as { port: number }).port;

  const server = createServer({ pauseOnConnect: true }, (raw) => {
    open.add(raw);
    raw.on('error', () => undefined);
    const leg = new ClientLeg({
      credentials: { cert: opts.cert, key: opts.key },
      ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      context: 'tiny 1',
    });
    let ctl: Socket = raw;
    let buf = '';
    let prot = 'C';
    let pending: Promise<{ socket: Socket; rec: DataRecord }> | null = null;
    const say = (l: string) => ctl.write(`${l}\r\n`);

    const passive = async (): Promise<number> => {
      const l = createServer({ pauseOnConnect: true });
      extra.push(l);
      l.listen(0, '127.0.0.1');
      await once(l, 'listening');
      pending = new Promise((resolve, reject) => {
        l.once('connection', (s: Socket) => {
          l.close();
          open.add(s);
          const rec: DataRecord = { command: '', tls: prot === 'P', reused: false };
          data.push(rec);
          if (prot !== 'P') return resolve({ socket: s, rec });
          leg.acceptData(s).then(({ socket, reused }) => {
            rec.reused = reused;
            rec.version = socket.getProtocol() ?? '?';
            resolve({ socket, rec });
          }, reject);
        });
      });
      pending.catch((e: Error) => errors.push(e.message));
      return (l.address() as { port: number }).port;
    };

    const transfer = async (cmd: string, arg: string) => {
      if (!pending) return say('425 Use PASV or EPSV first');
      const p = pending;
      pending = null;
      say('150 Opening data connection');
      try {
        const { socket, rec } = await p;
        rec.command = cmd;
        const up = connect(originPort, '127.0.0.1');
        await once(up, 'connect');
        up.write(`${cmd === 'RETR' ? arg : ''}\n`);
        const r = relay(socket, up, { context: `tiny data ${cmd}` });
        rec.stats = await r.done;
        say(rec.stats.error ? `426 ${rec.stats.error}` : '226 Transfer complete');
      } catch (e) {
        errors.push((e as Error).message);
        say('425 Cannot open data connection');
      }
    };

    const onLine = async (line: string) => {
      const [verb = '', ...rest] = line.split(' ');
      const arg = rest.join(' ');
      switch (verb.toUpperCase()) {
        case 'AUTH':
          if (!/^(TLS|SSL|TLS-C)$/i.test(arg)) return say('504 AUTH TLS only');
          say('234 Proceed with negotiation');
          return upgrade();
        case 'USER':
          return say('331 Password please');
        case 'PASS':
          return say('230 Logged in');
        case 'PBSZ':
          return say('200 PBSZ=0');
        case 'PROT':
          prot = arg.toUpperCase() === 'P' ? 'P' : 'C';
          return say(`200 PROT ${prot}`);
        case 'PWD':
          return say('257 "/"');
        case 'CWD':
          return say('250 OK');
        case 'TYPE':
          return say('200 Type set');
        case 'SYST':
          return say('215 UNIX Type: L8');
        case 'FEAT':
          return say('211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n211 End');
        case 'EPSV':
          return say(`229 Entering Extended Passive Mode (|||${await passive()}|)`);
        case 'PASV': {
          const p = await passive();
          return say(`227 Entering Passive Mode (127,0,0,1,${p >> 8},${p & 255})`);
        }
        case 'SIZE': {
          const f = opts.files[arg.replace(/^\//, '')];
          return f ? say(`213 ${f.length}`) : say('550 No such file');
        }
        case 'RETR':
          return transfer('RETR', arg.replace(/^\//, ''));
        case 'NLST':
        case 'LIST':
          return transfer(verb.toUpperCase(), arg);
        case 'QUIT':
          say('221 Bye');
          return ctl.end();
        default:
          return say('502 Not here');
      }
    };

    // one command at a time, in order
    let chain: Promise<unknown> = Promise.resolve();
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        chain = chain.then(() => onLine(line));
        if (/^AUTH /i.test(line)) {
          // the rest, if any, is the start of the handshake: stop reading lines here
          ctl.removeListener('data', onData);
          ctl.pause();
          break;
        }
      }
    };

    const upgrade = async () => {
      const head = Buffer.from(buf, 'latin1');
      buf = '';
      try {
        const t: TLSSocket = await leg.startControl(raw, head);
        controls.push(t.getProtocol() ?? '?');
        ctl = t;
        t.on('error', () => undefined);
        t.on('data', onData);
      } catch (e) {
        errors.push((e as Error).message);
      }
    };

    raw.once('close', () => leg.close());
    if (opts.implicit) {
      void upgrade().then(() => say('220 tiny FTPS ready'));
    } else {
      raw.on('data', onData);
      raw.resume();
      say('220 tiny FTP ready');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    data,
    controls,
    errors,
    async close() {
      for (const s of open) s.destroy();
      for (const l of extra) l.close();
      server.close();
      origin.close();
    },
  };
}
