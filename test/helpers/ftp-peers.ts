// Small scripted FTP peers on loopback for daemon tests: a server that answers the usual commands and
// records what it got, and a client that sends lines and reads replies.
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ScriptedServer {
  port: number;
  received: string[];
  sockets: Socket[];
  close(): Promise<void>;
}

export interface ServerScript {
  greeting?: string | null; // null: never say anything
  pasvReply?: string;
  epsvReply?: string;
}

export async function scriptedServer(script: ServerScript = {}, host = '127.0.0.1'): Promise<ScriptedServer> {
  const received: string[] = [];
  const sockets: Socket[] = [];
  const server: Server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    if (script.greeting !== null) s.write(script.greeting ?? '220 scripted ready\r\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl + 1);
        buf = buf.slice(nl + 1);
        received.push(line);
        const verb = line.trim().split(' ')[0]!.toUpperCase();
        const reply: Record<string, string> = {
          USER: '331 password\r\n',
          PASS: '230 logged in\r\n',
          PASV: script.pasvReply ?? '227 Entering Passive Mode (127,0,0,1,195,80)\r\n',
          EPSV: script.epsvReply ?? '229 Entering Extended Passive Mode (|||50000|)\r\n',
          PORT: '200 PORT ok\r\n',
          EPRT: '200 EPRT ok\r\n',
          NOOP: '200 NOOP ok\r\n',
          RETR: '150 opening\r\n226 done\r\n',
          QUIT: '221 Goodbye.\r\n',
        };
        s.write(reply[verb] ?? '500 unknown\r\n');
        if (verb === 'QUIT') s.end();
      }
    });
  });
  server.listen(0, host);
  await once(server, 'listening');
  const addr = server.address();
  if (!addr || typeof addr !== 'object') throw new Error('no address');
  return {
    port: addr.port,
    received,
    sockets,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export class LineClient {
  private buf = '';
  private waiters: (() => void)[] = [];
  readonly lines: string[] = [];
  closed = false;

  constructor(readonly socket: Socket) {
    socket.on('data', (d) => {
      this.buf += d.toString('latin1');
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, nl + 1));
        this.buf = this.buf.slice(nl + 1);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<LineClient> {
    const s = connect(port, host);
    await once(s, 'connect');
    return new LineClient(s);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(line: string): void {
    this.socket.write(line);
  }

  /** The next line (waits up to `ms`); null if the connection closed first. */
  async next(ms = 3000): Promise<string | null> {
    const deadline = Date.now() + ms;
    while (this.lines.length === 0) {
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no line within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.lines.shift()!;
  }

  async waitClosed(ms = 3000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}
