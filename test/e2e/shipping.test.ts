// What ships besides the code: the man page lints and renders and names every option; every example
// says when to use it and is loaded by an end-to-end test as shipped; the package installs the man page
// and the examples; the service files (systemd unit, OpenBSD rc.d script) match the daemon they run.
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LONG_HELP, OPTSTRING } from '../../src/config.js';
import { requireLab, ROOT } from './lab.js';

const MAN = `${ROOT}man/ftp-proxy.8`;
const man = readFileSync(MAN, 'utf8');
const readme = readFileSync(`${ROOT}README.md`, 'utf8');
const EXAMPLE_DIRS = ['nftables-examples', 'iptables-examples', 'pf-examples'];
const examples = EXAMPLE_DIRS.flatMap((d) => readdirSync(`${ROOT}${d}`).map((f) => `${d}/${f}`));
const longOptions = [...LONG_HELP.matchAll(/^ {2}--([a-z-]+)/gm)].map((m) => m[1]!);

beforeAll(async () => {
  await requireLab();
  for (const [tool, pkg] of [
    ['mandoc', 'mandoc'],
    ['man', 'man-db'],
  ]) {
    const r = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (r.exitCode !== 0) throw new Error(`the man page checks need ${tool}: apt-get install ${pkg}`);
  }
});

describe('man/ftp-proxy.8', () => {
  it('mandoc -Tlint -Wall is clean (a machine whose mandoc.db lacks other pages is not the page\'s fault)', async () => {
    const r = await execa('mandoc', ['-Tlint', '-Wall', MAN], { reject: false });
    const problems = `${r.stdout}\n${r.stderr}`
      .split('\n')
      .filter((l) => l.trim() && !/outdated mandoc\.db lacks/.test(l));
    expect(problems).toEqual([]);
  });

  it('man -l renders it, with its sections', async () => {
    const r = await execa('man', ['-l', MAN], { env: { MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80', LANG: 'C.UTF-8' }, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'LINUX FIREWALL CONFIGURATION', 'OPENBSD CONFIGURATION', 'LOGGING', 'DIFFERENCES FROM OPENBSD', 'FILES', 'EXIT STATUS', 'EXAMPLES', 'SEE ALSO', 'CAVEATS']) {
      expect(r.stdout).toMatch(new RegExp(`^${section}$`, 'm'));
    }
    expect(r.stdout).toMatch(/ftp-proxy status \[--backend name\] \[--json \| --watch\]/);
  });

  it.each(OPTSTRING.replace(/:/g, '').split(''))('describes -%s', (flag) => {
    expect(man).toMatch(new RegExp(`^\\.It Fl ${flag}\\b`, 'm'));
  });

  it('the option list is complete (the test knows the long options)', () => {
    expect(longOptions).toEqual(['backend', 'pidfile', 'log-format', 'pinhole-timeout', 'max-per-client', 'login-timeout', 'user', 'metrics', 'print-rules', 'help', 'version', ...longOptions.slice(11)]);
  });

  it.each(longOptions)('describes --%s, and the README names it', (name) => {
    expect(man).toMatch(new RegExp(`^\\.It Fl -${name}\\b`, 'm'));
    expect(readme).toContain(`--${name}`);
  });

  it('covers what the CAVEATS must say: TLS, securelevel, kernel FTP helpers on port 21', () => {
    const caveats = man.slice(man.indexOf('.Sh CAVEATS'));
    expect(caveats).toMatch(/TLS/);
    expect(caveats).toMatch(/securelevel/);
    expect(caveats).toMatch(/nf_conntrack_ftp/);
  });

  it('package.json installs it, and the examples and scripts with it', () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { man: string[]; files: string[] };
    expect(pkg.man).toEqual(['man/ftp-proxy.8']);
    for (const d of [...EXAMPLE_DIRS, 'man', 'scripts', 'dist']) expect(pkg.files).toContain(`${d}/`);
  });
});

describe('examples', () => {
  const tests = readdirSync(`${ROOT}test/e2e`)
    .filter((f) => f.endsWith('.ts') && f !== 'shipping.test.ts')
    .map((f) => readFileSync(`${ROOT}test/e2e/${f}`, 'utf8'))
    .join('\n');

  it('there are the four nftables, the iptables and the pf examples', () => {
    expect(examples).toEqual(
      expect.arrayContaining([
        'nftables-examples/forward-redirect.nft',
        'nftables-examples/forward-tproxy.nft',
        'nftables-examples/forward-dualstack.nft',
        'nftables-examples/reverse.nft',
        'iptables-examples/forward-redirect.rules',
        'iptables-examples/forward-tproxy.rules',
        'iptables-examples/reverse.rules',
        'pf-examples/forward.conf',
        'pf-examples/reverse.conf',
      ]),
    );
  });

  it.each(examples)('%s starts with a comment that says when to use it', (file) => {
    const head = readFileSync(`${ROOT}${file}`, 'utf8').split('\n').slice(0, 8);
    expect(head.every((l) => l.startsWith('#') || l === '')).toBe(true);
    expect(head.join('\n')).toMatch(/^# When to use: \S/m);
  });

  it.each(examples.filter((f) => !f.startsWith('pf-')))('%s is loaded as shipped by an end-to-end test', (file) => {
    const name = file.split('/')[1]!;
    // Loaded through lab.loadRuleset (lab.sh fw-load), which substitutes only interface names and addresses.
    expect(tests).toContain(name);
  });

  it.each(examples.filter((f) => f.startsWith('pf-')))('%s is checked by the pf grammar test', (file) => {
    expect(readFileSync(`${ROOT}test/unit/pf.test.ts`, 'utf8')).toContain(file.split('/')[1]!);
  });
});

describe('service files', () => {
  it('the systemd unit is hardened: a dedicated user, only CAP_NET_ADMIN, restarts on failure, sandboxed', () => {
    const unit = readFileSync(`${ROOT}scripts/ftp-proxy.service`, 'utf8');
    for (const line of [
      'Type=notify',
      'ExecStart=/usr/local/bin/ftp-proxy -d $FTP_PROXY_FLAGS',
      'Restart=on-failure',
      'User=ftp-proxy',
      'AmbientCapabilities=CAP_NET_ADMIN',
      'CapabilityBoundingSet=CAP_NET_ADMIN',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'ProtectKernelModules=yes',
      'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    ]) {
      expect(unit).toContain(`\n${line}\n`);
    }
  });

  describe('the OpenBSD rc.d script', () => {
    const RC = `${ROOT}scripts/rc.d/ftp_proxy`;
    const ns = `ftpe${process.pid}xrcd`;
    const dir = mkdtempSync(join(tmpdir(), 'ftpp-rcd-'));
    let pid = 0;
    beforeAll(async () => {
      await execa('ip', ['netns', 'add', ns]);
      await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    });
    afterAll(async () => {
      if (pid) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      await execa('ip', ['netns', 'del', ns], { reject: false });
      rmSync(dir, { recursive: true, force: true });
    });

    /** The variables the script gives rc.subr(8), with rc.conf's flags. */
    const rcVars = async (flags: string): Promise<Record<string, string>> => {
      const fake = join(dir, 'rc.subr');
      writeFileSync(fake, 'rc_cmd() { printf "daemon=%s\\npexp=%s\\nrc_reload=%s\\nrc_reload_signal=%s\\ncmd=%s\\n" "$daemon" "$pexp" "$rc_reload" "$rc_reload_signal" "$1"; }\n');
      const script = readFileSync(RC, 'utf8').replace('. /etc/rc.d/rc.subr', `daemon_flags=${JSON.stringify(flags)}\n. ${fake}`);
      expect(script).not.toBe(readFileSync(RC, 'utf8'));
      const r = await execa('bash', ['-c', script, 'ftp_proxy', 'check']);
      return Object.fromEntries(r.stdout.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    };

    it('parses, names the npm-installed command, reloads with SIGUSR1 (SIGHUP ends the daemon, as on OpenBSD)', async () => {
      expect((await execa('bash', ['-n', RC], { reject: false })).exitCode).toBe(0);
      const v = await rcVars('-D6');
      expect(v).toMatchObject({ daemon: '/usr/local/bin/ftp-proxy', rc_reload: '', rc_reload_signal: 'USR1', cmd: 'check' });
    });

    it('its pexp matches the command line of the daemon it starts (npm layout), and only with the same flags', async () => {
      // An npm install: <prefix>/lib/node_modules/ftp-proxy/dist/cli.js, <prefix>/bin/ftp-proxy a link to it.
      const pkg = join(dir, 'lib/node_modules/ftp-proxy');
      mkdirSync(pkg, { recursive: true });
      cpSync(`${ROOT}dist`, join(pkg, 'dist'), { recursive: true });
      copyFileSync(`${ROOT}package.json`, join(pkg, 'package.json'));
      symlinkSync(`${ROOT}node_modules`, join(pkg, 'node_modules'));
      mkdirSync(join(dir, 'bin'));
      symlinkSync('../lib/node_modules/ftp-proxy/dist/cli.js', join(dir, 'bin/ftp-proxy'));
      const pidfile = join(dir, 'ftp-proxy.pid');
      const flags = `-D6 -v --backend nftables --pidfile ${pidfile}`;
      // rc_start runs "${daemon} ${daemon_flags}"; the daemon detaches once it listens.
      const start = await execa('ip', ['netns', 'exec', ns, process.execPath, join(dir, 'bin/ftp-proxy'), ...flags.split(' ')], { reject: false });
      expect(start.exitCode, start.stderr).toBe(0);
      pid = Number(readFileSync(pidfile, 'utf8').trim());
      expect(pid).toBeGreaterThan(0);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '').split('\0').join(' ');
      expect(cmdline).toContain('/lib/node_modules/ftp-proxy/dist/cli.js -D6 -v');
      const grep = async (pexp: string) => (await execa('grep', ['-qxE', pexp], { input: `${cmdline}\n`, reject: false })).exitCode;
      expect(await grep((await rcVars(flags)).pexp!)).toBe(0);
      expect(await grep((await rcVars('-D7')).pexp!)).toBe(1);
      expect(await grep((await rcVars('')).pexp!)).toBe(1);
      // rc_reload's SIGUSR1 (the policy re-read): the daemon lives on.
      process.kill(pid, 'SIGUSR1');
      await new Promise((r) => setTimeout(r, 500));
      expect(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0]).not.toBe('Z');
      expect(readFileSync(pidfile, 'utf8').trim()).toBe(String(pid));
      // rc_stop's SIGTERM: a clean exit that removes the pid file.
      process.kill(pid, 'SIGTERM');
      const written = (): boolean => existsSync(pidfile) && readFileSync(pidfile, 'utf8').trim() !== '';
      for (let i = 0; i < 100 && written(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(written()).toBe(false);
      pid = 0;
    });
  });
});

describe('scripts/deps.sh (which npm test runs first) leaves the host as it found it', () => {
  it('no Debian ftp-proxy installed to shadow ours on PATH: the bench has it unpacked privately', async () => {
    const dpkg = await execa('dpkg-query', ['-W', '-f=${Status}', 'ftp-proxy'], { reject: false });
    expect(dpkg.stdout).not.toMatch(/install ok installed/);
    expect(existsSync('/usr/sbin/ftp-proxy')).toBe(false);
    const debs = process.env.FTP_PROXY_DEBS ?? '/var/cache/ftp-proxy-test/debs';
    expect(existsSync(`${debs}/ftp-proxy/root/usr/sbin/ftp-proxy`)).toBe(true);
  });

  it('no FTP server service left enabled for the next boot, none running on the host', async () => {
    const wants = ['multi-user.target.wants', 'sockets.target.wants'].flatMap((d) => {
      const dir = `/etc/systemd/system/${d}`;
      return existsSync(dir) ? readdirSync(dir) : [];
    });
    expect(wants.filter((u) => /proftpd|vsftpd|pure-ftpd/.test(u))).toEqual([]);
    // Lab servers run inside the labs' network namespaces; one in ours (the host's) would be a service.
    const ours = readlinkSync('/proc/self/ns/net');
    const ps = await execa('pgrep', ['-x', 'proftpd|vsftpd|pure-ftpd'], { reject: false });
    const onHost = ps.stdout.split('\n').filter((pid) => {
      try {
        return pid !== '' && readlinkSync(`/proc/${pid}/ns/net`) === ours;
      } catch {
        return false; // gone meanwhile
      }
    });
    expect(onHost).toEqual([]);
  });
});
