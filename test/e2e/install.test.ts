// Installing it as an admin would: `npm pack` of a checkout without dist/ (prepare builds it), the
// tarball installed with `npm install -g` into a scratch prefix, the command run from there; then
// scripts/install.sh of that install into a scratch root (systemd unit, sysusers.d, watchdog, man page,
// completions, /etc/ftp-proxy), checked with systemd's offline tools, and --uninstall leaving the root
// as it was but for the configuration the admin changed.
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LONG_HELP, OPTSTRING } from '../../src/config.js';
import { ROOT } from './lab.js';

const dir = mkdtempSync(join(tmpdir(), 'ftpp-install-'));
const checkout = join(dir, 'checkout');
const prefix = join(dir, 'prefix');
const root = join(dir, 'root');
const BIN = join(prefix, 'bin/ftp-proxy');
const PKG = join(prefix, 'lib/node_modules/ftp-proxy');
const INSTALL = join(PKG, 'scripts/install.sh');

/** Every path under a directory with its type, mode and content hash: what "as it was" means. */
function tree(base: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(base, rel)).sort()) {
      const r = `${rel}/${name}`;
      const st = lstatSync(join(base, r));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.set(r, `dir ${mode}`);
        walk(r);
      } else if (st.isSymbolicLink()) out.set(r, `link ${readlinkSync(join(base, r))}`);
      else out.set(r, `file ${mode} ${createHash('sha256').update(readFileSync(join(base, r))).digest('hex')}`);
    }
  };
  walk('');
  return out;
}

beforeAll(async () => {
  for (const [tool, pkg] of [
    ['systemd-analyze', 'systemd'],
    ['systemd-sysusers', 'systemd'],
    ['npm', 'npm (or Node.js from nodesource)'],
  ]) {
    const r = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (r.exitCode !== 0) throw new Error(`the install test needs ${tool}: apt-get install ${pkg}`);
  }
  // A checkout as git gives it (the working tree's files, no dist/, no node_modules of its own: the
  // project's are linked so that the build needs no network).
  const files = (await execa('git', ['ls-files', '-co', '--exclude-standard'], { cwd: ROOT })).stdout.split('\n').filter((f) => f && !f.startsWith('dist/'));
  await execa('tar', ['-cf', join(dir, 'src.tar'), '-T', '-'], { cwd: ROOT, input: files.filter((f) => existsSync(join(ROOT, f))).join('\n') });
  mkdirSync(checkout);
  await execa('tar', ['-xf', join(dir, 'src.tar')], { cwd: checkout });
  symlinkSync(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));
  mkdirSync(root);
}, 120_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('npm pack and npm install -g', () => {
  let tarball = '';

  it('npm pack builds dist/ itself (prepare) and packs the command, the man page, the examples and install.sh', async () => {
    expect(existsSync(join(checkout, 'dist'))).toBe(false);
    const r = await execa('npm', ['pack', '--json', '--pack-destination', dir], { cwd: checkout, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const [info] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
    tarball = join(dir, info!.filename);
    const packed = info!.files.map((f) => f.path);
    for (const f of ['dist/cli.js', 'dist/completion.js', 'man/ftp-proxy.8', 'scripts/install.sh', 'scripts/ftp-proxy.service', 'nftables-examples/dropin-forward-redirect.nft', 'iptables-examples/dropin-forward-redirect.rules', 'policy-examples/minimal.policy']) {
      expect(packed).toContain(f);
    }
  }, 180_000);

  it('installs from the tarball into a prefix (registry only for metadata the npm cache lacks) and runs', async () => {
    // As the README says: re2's install script is approved (npm 11 warns about unreviewed ones, later
    // npm releases block them). It fetches a
    // prebuilt binary or compiles one (minutes); here its mirror setting points it at the binary the
    // project's own npm ci made, so the test needs neither the network nor a compiler.
    const mirror = join(dir, 're2-mirror');
    mkdirSync(mirror);
    const built = join(ROOT, 'node_modules/re2/build/Release/re2.node');
    if (existsSync(built)) copyFileSync(built, join(mirror, `${process.platform}-${process.arch}-${process.versions.modules}`));
    const r = await execa('npm', ['install', '-g', '--prefix', prefix, '--allow-scripts=re2', '--prefer-offline', '--no-audit', '--no-fund', tarball], {
      cwd: dir,
      reject: false,
      env: { RE2_DOWNLOAD_MIRROR: mirror, RE2_DOWNLOAD_SKIP_PATH: '1', RE2_DOWNLOAD_SKIP_VER: '1' },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readlinkSync(BIN)).toBe('../lib/node_modules/ftp-proxy/dist/cli.js');
    const help = await execa(BIN, ['--help'], { reject: false });
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/^usage: ftp-proxy \[-6Adrv\]/);
    // -h is not an OpenBSD flag: its usage message and status 1, as there.
    const h = await execa(BIN, ['-h'], { reject: false });
    expect(h.exitCode).toBe(1);
    expect(h.stderr).toMatch(/^usage: ftp-proxy /m);
    expect((await execa(BIN, ['--version'])).stdout).toMatch(/^ftp-proxy \d+\.\d+\.\d+$/);
    // npm links the man page into the prefix.
    expect(existsSync(join(prefix, 'share/man/man8/ftp-proxy.8'))).toBe(true);
    // The policy check loads every module the daemon does (the regex engine's native part among them).
    const check = await execa(BIN, ['-f', join(PKG, 'policy-examples/minimal.policy'), '--check-config'], { reject: false });
    expect(check.exitCode, `${check.stdout}${check.stderr}`).toBe(0);
  }, 600_000);
});

describe('scripts/install.sh into a scratch root', () => {
  let before: Map<string, string>;
  const unitPath = join(root, 'usr/local/lib/systemd/system/ftp-proxy.service');

  it('refuses a --bin that is not this ftp-proxy (Debian\'s /usr/sbin/ftp-proxy is another program)', async () => {
    const r = await execa('bash', [INSTALL, '--root', root, '--bin', '/bin/true'], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/\/bin\/true is not this ftp-proxy/);
    expect(readdirSync(root)).toEqual([]);
  });

  it('installs the unit, the user, the watchdog, the man page, the completions and /etc/ftp-proxy, keeping an admin\'s file', async () => {
    // An admin's own policy, there before the install: never replaced.
    mkdirSync(join(root, 'etc/ftp-proxy'), { recursive: true });
    writeFileSync(join(root, 'etc/ftp-proxy/minimal.policy'), '# the admin\'s own\n');
    before = tree(root);
    const r = await execa('bash', [INSTALL, '--root', root], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const mode = (p: string): string => (statSync(join(root, p)).mode & 0o7777).toString(8);
    expect(mode('usr/local/lib/systemd/system/ftp-proxy.service')).toBe('644');
    expect(mode('usr/local/lib/sysusers.d/ftp-proxy.conf')).toBe('644');
    expect(mode('usr/local/sbin/ftp-proxy-watchdog')).toBe('755');
    expect(mode('usr/local/share/man/man8/ftp-proxy.8')).toBe('644');
    expect(mode('usr/local/share/bash-completion/completions/ftp-proxy')).toBe('644');
    expect(mode('usr/local/share/zsh/site-functions/_ftp-proxy')).toBe('644');
    expect(mode('etc/ftp-proxy')).toBe('755');
    for (const f of readdirSync(join(ROOT, 'policy-examples'))) expect(existsSync(join(root, 'etc/ftp-proxy', f))).toBe(true);
    expect(readFileSync(join(root, 'etc/ftp-proxy/minimal.policy'), 'utf8')).toBe('# the admin\'s own\n');
    expect(r.stdout).toMatch(/\/etc\/ftp-proxy\/minimal\.policy exists and is not ours: left as it is/);
    // The unit calls our command by its full path, never whichever ftp-proxy PATH finds first.
    const unit = readFileSync(unitPath, 'utf8');
    expect(unit).toMatch(new RegExp(`^ExecStart=${BIN} -d \\$FTP_PROXY_FLAGS$`, 'm'));
    expect(unit).toMatch(new RegExp(`^ExecReload=${BIN} --check-config \\$FTP_PROXY_FLAGS$`, 'm'));
    expect(unit).not.toMatch(/\/usr\/local\/bin\/ftp-proxy/);
    // The flags file the unit reads, installed as configuration (an admin's copy is kept).
    expect(readFileSync(join(root, 'etc/ftp-proxy/ftp-proxy.conf'), 'utf8')).toMatch(/^FTP_PROXY_FLAGS=""$/m);
    expect(unit).not.toMatch(/^ExecStart=ftp-proxy/m);
    // The watchdog restarts the daemon with the command line it recorded, full paths and all.
    expect(readFileSync(join(root, 'usr/local/sbin/ftp-proxy-watchdog'), 'utf8')).toBe(readFileSync(join(ROOT, 'scripts/ftp-proxy-watchdog'), 'utf8'));
    // Installing again changes nothing.
    const once = tree(root);
    expect((await execa('bash', [INSTALL, '--root', root], { reject: false })).exitCode).toBe(0);
    expect(tree(root)).toEqual(once);
  });

  it('the installed unit passes systemd-analyze verify (its command, its man page)', async () => {
    const r = await execa('systemd-analyze', ['verify', unitPath], { env: { MANPATH: `${join(root, 'usr/local/share/man')}:` }, reject: false });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.exitCode).toBe(0);
  });

  it('systemd-sysusers --root creates the user the unit runs as', async () => {
    const unit = readFileSync(unitPath, 'utf8');
    const user = /^User=(\S+)$/m.exec(unit)?.[1] ?? /--user[= ](\S+)/.exec(unit)?.[1];
    expect(user).toBeTruthy();
    const r = await execa('systemd-sysusers', ['--root', root], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).toMatch(new RegExp(`^${user}:x:\\d+:\\d+:[^:]*:/:/usr/sbin/nologin$`, 'm'));
    expect(readFileSync(join(root, 'etc/group'), 'utf8')).toMatch(new RegExp(`^${user}:x:\\d+:`, 'm'));
  });

  it('the installed bash completion offers every option', async () => {
    const r = await execa('bash', ['-c', `. ${join(root, 'usr/local/share/bash-completion/completions/ftp-proxy')}; COMP_WORDS=(ftp-proxy ''); COMP_CWORD=1; _ftp_proxy; printf '%s\\n' "\${COMPREPLY[@]}"`]);
    const offered = r.stdout.split('\n');
    for (const c of OPTSTRING.replace(/:/g, '')) expect(offered).toContain(`-${c}`);
    for (const m of LONG_HELP.matchAll(/^ {2}(--[a-z-]+)/gm)) expect(offered).toContain(m[1]);
  });

  it('--uninstall removes what it installed and keeps the configuration the admin changed, saying so', async () => {
    appendFileSync(join(root, 'etc/ftp-proxy/passive-server.policy'), '# changed by the admin\n');
    const changed = readFileSync(join(root, 'etc/ftp-proxy/passive-server.policy'), 'utf8');
    const r = await execa('bash', [INSTALL, '--root', root, '--uninstall'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/kept \/etc\/ftp-proxy\/passive-server\.policy: changed since it was installed/);
    const after = tree(root);
    // What is left beyond the root as it was: the changed policy, and what systemd-sysusers made.
    const sysusers = ['/etc/passwd', '/etc/group', '/etc/shadow', '/etc/gshadow', '/etc/.pwd.lock'];
    const extra = [...after.keys()].filter((p) => !before.has(p) && !sysusers.includes(p));
    expect(extra).toEqual(['/etc/ftp-proxy/passive-server.policy']);
    expect(readFileSync(join(root, 'etc/ftp-proxy/passive-server.policy'), 'utf8')).toBe(changed);
    for (const [p, v] of before) expect(after.get(p), p).toBe(v);
    expect(existsSync(join(root, 'usr'))).toBe(false);
    // A second --uninstall has nothing to do.
    expect((await execa('bash', [INSTALL, '--root', root, '--uninstall'], { reject: false })).exitCode).toBe(1);
  });
});
