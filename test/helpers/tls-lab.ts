// The TLS part of the test lab: a lab CA and server certificates (openssl, in test set-up only), and the
// FTPS servers: vsftpd and pure-ftpd unpacked privately from Debian's .deb (they conflict with proftpd,
// which the lab installs; nothing here is installed or enabled as a service), proftpd with mod_tls.
// Each server runs as a child of the test, in a namespace, with a configuration file the test wrote.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';

/** Where scripts/deps.sh unpacks the .deb files (never installed): <dir>/<package>/root/... */
export const DEBS = process.env.FTP_PROXY_DEBS ?? '/var/cache/ftp-proxy-test/debs';
export const VSFTPD = `${DEBS}/vsftpd/root/usr/sbin/vsftpd`;
export const PURE_FTPD = `${DEBS}/pure-ftpd/root/usr/sbin/pure-ftpd`;
export const PURE_PW = `${DEBS}/pure-ftpd/root/usr/bin/pure-pw`;
export const PROFTPD_MOD_TLS = '/usr/lib/proftpd/mod_tls.so';

/** The system user vsftpd's anonymous sessions run as: Debian's proftpd package creates it (home /srv/ftp). */
export const ANON_USER = 'ftp';

/** Fail (never skip) with what to run when a TLS lab piece is missing. */
export async function requireTlsLab(need: ('vsftpd' | 'pure-ftpd' | 'proftpd-tls' | 'python3' | 'openssl' | 'curl')[]): Promise<void> {
  const missing: string[] = [];
  for (const n of need) {
    if (n === 'vsftpd' && !existsSync(VSFTPD)) missing.push(`${VSFTPD} (scripts/deps.sh unpacks vsftpd's .deb there)`);
    if (n === 'vsftpd') {
      const home = (await execa('getent', ['passwd', ANON_USER], { reject: false })).stdout.split(':')[5];
      if (!home || !existsSync(home)) missing.push(`user ${ANON_USER} with an existing home (Debian's proftpd-core creates it: scripts/deps.sh)`);
    }
    if (n === 'pure-ftpd' && !existsSync(PURE_FTPD)) missing.push(`${PURE_FTPD} (scripts/deps.sh unpacks pure-ftpd's .deb there)`);
    if (n === 'proftpd-tls' && !existsSync(PROFTPD_MOD_TLS)) missing.push(`${PROFTPD_MOD_TLS}: apt-get install proftpd-mod-crypto`);
    if (['python3', 'openssl', 'curl'].includes(n)) {
      const r = await execa('sh', ['-c', `command -v ${n}`], { reject: false });
      if (r.exitCode !== 0) missing.push(`${n}: apt-get install ${n}`);
    }
  }
  for (const bin of [VSFTPD, PURE_FTPD]) {
    if (!existsSync(bin) || !need.some((n) => bin.includes(`/${n}/`))) continue;
    const r = await execa('ldd', [bin], { reject: false });
    const libs = r.stdout.split('\n').filter((l) => l.includes('not found'));
    if (libs.length) missing.push(`${bin} lacks shared libraries (${libs.map((l) => l.trim().split(' ')[0]).join(', ')}): run scripts/deps.sh`);
  }
  if (missing.length) throw new Error(`TLS lab cannot run: ${missing.join('; ')}`);
}

export interface LabPki {
  dir: string;
  caCert: string;
  caKey: string;
  /** PEM contents of the CA certificate, for Node's `ca`. */
  caPem: string;
  /** A server certificate and key file, made by issue(). */
  issue(name: string, sans: string[]): Promise<{ cert: string; key: string; certPem: string; keyPem: string }>;
}

/** A lab CA (RSA 2048: every FTPS server here loads it) in dir, named `cn`. */
export async function makeLabPki(dir: string, cn = 'ftp-proxy test lab CA'): Promise<LabPki> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const caKey = `${dir}/ca.key`;
  const caCert = `${dir}/ca.pem`;
  await execa('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return {
    dir,
    caCert,
    caKey,
    caPem: readFileSync(caCert, 'utf8'),
    async issue(name, sans) {
      const key = `${dir}/${name}.key`;
      const cert = `${dir}/${name}.pem`;
      const ext = `${dir}/${name}.ext`;
      const alt = sans.map((s) => (/^[\d.]+$|:/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(',');
      writeFileSync(ext, `subjectAltName=${alt}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
      await execa('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', `${dir}/${name}.csr`, '-subj', `/CN=${sans[0] ?? name}`]);
      await execa('openssl', ['x509', '-req', '-in', `${dir}/${name}.csr`, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
      return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
    },
  };
}

export interface FtpsServer {
  proc: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

function runIn(ns: string, cmd: string[], logFile: string): ChildProcess {
  const c = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  // `ip netns exec` execs the server, so this pid is the server's: lab.sh down ends it if the test could not
  if (c.pid) writeFileSync(`${logFile}.labpid`, String(c.pid));
  const out: Buffer[] = [];
  c.stdout!.on('data', (d: Buffer) => out.push(d));
  c.stderr!.on('data', (d: Buffer) => out.push(d));
  c.on('exit', () => writeFileSync(`${logFile}.out`, Buffer.concat(out)));
  return c;
}

/** Wait until something accepts TCP on host:port inside ns. */
async function waitListening(ns: string, host: string, port: number, proc: ChildProcess, what: string, logFile: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) break;
    const r = await execa('ip', ['netns', 'exec', ns, 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`], { reject: false });
    if (r.exitCode === 0) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-800) : '';
  throw new Error(`${what} did not listen on ${host} port ${port} (exit ${proc.exitCode}): ${log}`);
}

/**
 * Start `cmd` in ns (its output kept in <logFile>.out) and wait until it listens on address:port; if it
 * does not, it is killed and the error carries what it printed.
 */
async function launch(o: { ns: string; address: string; port: number }, cmd: string[], what: string, logFile: string): Promise<{ proc: ChildProcess; stop: () => Promise<void> }> {
  const proc = runIn(o.ns, cmd, logFile);
  await waitListening(o.ns, o.address, o.port, proc, what, logFile).catch((e: Error) => {
    proc.kill('SIGKILL');
    const out = existsSync(`${logFile}.out`) ? readFileSync(`${logFile}.out`, 'utf8') : '';
    throw new Error(`${e.message} ${out}`);
  });
  return { proc, stop: stopper(proc) };
}

function stopper(proc: ChildProcess): () => Promise<void> {
  return async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 2000);
    await gone;
    clearTimeout(t);
  };
}

export interface VsftpdOptions {
  ns: string;
  /** Working directory for its config, log and the empty secure_chroot_dir. */
  dir: string;
  address: string;
  port: number;
  /** Served to anonymous ("ftp"/"anonymous") logins, read-only. */
  root: string;
  cert: string;
  key: string;
  implicit?: boolean;
  requireReuse?: boolean;
  pasv: [number, number];
  /** Anonymous uploads (STOR) into <root>/upload. */
  uploads?: boolean;
  /** false: PROT C allowed (force_anon_data_ssl=NO); logins still need TLS. Default true. */
  forceDataSsl?: boolean;
  /** false: no TLS at all (ssl_enable=NO), a plain server for one-sided tests. Default true. */
  ssl?: boolean;
  /** The address its PASV replies name (pasv_address), for a server published through a NAT. */
  pasvAddress?: string;
}

/**
 * vsftpd from the unpacked .deb, anonymous logins only (no PAM set-up needed), TLS forced for login and
 * data. seccomp_sandbox off: vsftpd 3.0.3's filter predates the system calls of bookworm's libc.
 * ssl_ciphers=HIGH: the built-in default (DES-CBC3-SHA) is gone from OpenSSL 3's default level.
 */
export async function startVsftpd(o: VsftpdOptions): Promise<FtpsServer & { conf: string }> {
  mkdirSync(`${o.dir}/empty`, { recursive: true, mode: 0o755 });
  const tag = `vsftpd-${o.port}`;
  const logFile = `${o.dir}/${tag}.log`;
  const conf = `${o.dir}/${tag}.conf`;
  writeFileSync(
    conf,
    [
      // one family per instance: vsftpd's listen and listen_ipv6 exclude each other
      ...(o.address.includes(':') ? ['listen=NO', 'listen_ipv6=YES', `listen_address6=${o.address}`] : ['listen=YES', 'listen_ipv6=NO', `listen_address=${o.address}`]),
      `listen_port=${o.port}`,
      'background=NO',
      'anonymous_enable=YES',
      'local_enable=NO',
      'no_anon_password=NO',
      // The anonymous user's home must exist (vsftpd enters it before anon_root; nobody's is
      // /nonexistent). Its "500 OOPS" then goes out in clear text on the TLS control connection, which
      // a TLS client reports as "wrong version number".
      `ftp_username=${ANON_USER}`,
      'nopriv_user=nobody',
      `anon_root=${o.root}`,
      `secure_chroot_dir=${o.dir}/empty`,
      'seccomp_sandbox=NO',
      'isolate_network=NO',
      'tcp_wrappers=NO',
      // uploads only into <root>/upload (the test makes it, owned by the anonymous user)
      `write_enable=${o.uploads ? 'YES' : 'NO'}`,
      `anon_upload_enable=${o.uploads ? 'YES' : 'NO'}`,
      'anon_umask=022',
      'pasv_enable=YES',
      `pasv_min_port=${o.pasv[0]}`,
      `pasv_max_port=${o.pasv[1]}`,
      ...(o.pasvAddress ? [`pasv_address=${o.pasvAddress}`] : []),
      'port_enable=YES',
      'connect_from_port_20=NO',
      'max_per_ip=0',
      `ssl_enable=${o.ssl === false ? 'NO' : 'YES'}`,
      `implicit_ssl=${o.implicit ? 'YES' : 'NO'}`,
      'allow_anon_ssl=YES',
      'force_anon_logins_ssl=YES',
      `force_anon_data_ssl=${o.forceDataSsl === false ? 'NO' : 'YES'}`,
      `require_ssl_reuse=${o.requireReuse === false ? 'NO' : 'YES'}`,
      'ssl_sslv2=NO',
      'ssl_sslv3=NO',
      'ssl_tlsv1=YES',
      'ssl_ciphers=HIGH',
      `rsa_cert_file=${o.cert}`,
      `rsa_private_key_file=${o.key}`,
      'xferlog_enable=YES',
      'xferlog_std_format=NO',
      'log_ftp_protocol=YES',
      'debug_ssl=YES',
      `vsftpd_log_file=${logFile}`,
      'ftpd_banner=ftp-proxy lab vsftpd',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const s = await launch(o, [VSFTPD, conf], 'vsftpd', logFile);
  return { ...s, conf, log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '') };
}

export interface ProftpdTlsOptions {
  ns: string;
  dir: string;
  address: string;
  port: number;
  /** mod_auth_file passwd file (lab.sh writes one: user lab, password lab). */
  passwd: string;
  cert: string;
  key: string;
  pasv: [number, number];
  /** false: TLSOptions NoSessionReuseRequired (mod_tls requires reuse by default). */
  requireReuse?: boolean;
  /** Bind only `address` (SocketBindTight), so other servers can listen on the same port elsewhere. */
  bindTight?: boolean;
}

/** A second proftpd in the server namespace with mod_tls (proftpd-mod-crypto), TLSRequired on. */
export async function startProftpdTls(o: ProftpdTlsOptions): Promise<FtpsServer & { conf: string }> {
  const tag = `proftpd-tls-${o.port}`;
  const conf = `${o.dir}/${tag}.conf`;
  const logFile = `${o.dir}/${tag}.log`;
  writeFileSync(
    conf,
    [
      'ServerName "ftp-proxy lab proftpd TLS"',
      'ServerType standalone',
      'DefaultServer on',
      `DefaultAddress ${o.address}`,
      `Port ${o.port}`,
      'UseIPv6 off',
      ...(o.bindTight ? ['SocketBindTight on'] : []),
      'User nobody',
      'Group nogroup',
      `PidFile ${o.dir}/${tag}.pid`,
      `ScoreboardFile ${o.dir}/${tag}.scoreboard`,
      'DelayEngine off',
      'WtmpLog off',
      'UseReverseDNS off',
      `SystemLog ${logFile}`,
      'TransferLog none',
      `PassivePorts ${o.pasv[0]} ${o.pasv[1]}`,
      'AuthOrder mod_auth_file.c',
      `AuthUserFile ${o.passwd}`,
      'RequireValidShell off',
      'DefaultRoot ~',
      'LoadModule mod_tls.c',
      'TLSEngine on',
      'TLSRequired on',
      `TLSLog ${o.dir}/${tag}.tls.log`,
      'TLSProtocol TLSv1.2 TLSv1.3',
      `TLSRSACertificateFile ${o.cert}`,
      `TLSRSACertificateKeyFile ${o.key}`,
      'TLSVerifyClient off',
      ...(o.requireReuse === false ? ['TLSOptions NoSessionReuseRequired'] : []),
      '',
    ].join('\n'),
  );
  const check = await execa('ip', ['netns', 'exec', o.ns, 'proftpd', '-t', '-c', conf], { reject: false });
  if (check.exitCode !== 0) throw new Error(`proftpd (mod_tls) config ${conf}: ${check.stderr}`);
  const s = await launch(o, ['proftpd', '-n', '-c', conf], 'proftpd (mod_tls)', logFile);
  return { ...s, conf, log: () => (existsSync(`${o.dir}/${tag}.tls.log`) ? readFileSync(`${o.dir}/${tag}.tls.log`, 'utf8') : '') };
}

export interface PureFtpdOptions {
  ns: string;
  dir: string;
  address: string;
  port: number;
  /** The virtual user lab/lab is chrooted here, running as nobody. */
  root: string;
  cert: string;
  key: string;
  pasv: [number, number];
}

/** pure-ftpd from the unpacked .deb, a virtual user in a PureDB of the test's, TLS required (-Y 2). */
export async function startPureFtpd(o: PureFtpdOptions): Promise<FtpsServer> {
  const tag = `pure-ftpd-${o.port}`;
  const pem = `${o.dir}/${tag}.pem`;
  writeFileSync(pem, readFileSync(o.cert, 'utf8') + readFileSync(o.key, 'utf8'), { mode: 0o600 });
  const pw = `${o.dir}/${tag}.passwd`;
  const pdb = `${o.dir}/${tag}.pdb`;
  if (!existsSync(pdb)) {
    await execa(PURE_PW, ['useradd', 'lab', '-u', '65534', '-g', '65534', '-d', o.root, '-f', pw], { input: 'lab\nlab\n' });
    await execa(PURE_PW, ['mkdb', pdb, '-f', pw]);
  }
  const logFile = `${o.dir}/${tag}.log`;
  const cmd = [PURE_FTPD, '-S', `${o.address},${o.port}`, '-l', `puredb:${pdb}`, '-E', '-A', '-H', '-Y', '2', '-2', pem, '-p', `${o.pasv[0]}:${o.pasv[1]}`, '-d'];
  return { ...(await launch(o, cmd, 'pure-ftpd', logFile)), log: () => '' };
}
