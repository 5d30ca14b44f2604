#!/usr/bin/env bash
# Make this machine ready to run ftp-proxy's demo and tests (Debian/Ubuntu, as root): the Debian
# packages that are missing, the npm dependencies, the build. Safe to run again; does nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "${0##*/}: run as root (it installs packages; the lab needs network namespaces and nftables)" >&2
  exit 1
fi

# tool:package pairs; a tool missing from PATH means its package gets installed.
wanted="nft:nftables iptables:iptables proftpd:proftpd-basic lftp:lftp curl:curl tnftp:tnftp conntrack:conntrack
openssl:openssl bc:bc ip:iproute2 mandoc:mandoc man:man-db python3:python3 ping:iputils-ping
systemd-analyze:systemd systemd-sysusers:systemd zsh:zsh"
# re2 (the policy file's regex engine) builds itself with node-gyp when no prebuilt binary can be fetched.
wanted="$wanted g++:g++ make:make"
missing=()
for pair in $wanted; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
ldconfig -p 2>/dev/null | grep -q 'libnftables\.so\.1 ' || missing+=(libnftables1)
# The TLS lab: proftpd's mod_tls, and the libraries of vsftpd and pure-ftpd, whose binaries are only
# unpacked (below), so apt does not bring their dependencies.
[ -e /usr/lib/proftpd/mod_tls.so ] || missing+=(proftpd-mod-crypto)
# npm run bench's FTPS part compares against proftpd's mod_proxy (a relaying FTPS proxy), run by the bench
# as its own child in the lab with its own configuration; the package enables no service of its own.
[ -e /usr/lib/proftpd/mod_proxy.so ] || missing+=(proftpd-mod-proxy)
ldconfig -p 2>/dev/null | grep -q 'libwrap\.so\.0 ' || missing+=(libwrap0)
ldconfig -p 2>/dev/null | grep -q 'libsodium\.so\.23 ' || missing+=(libsodium23)
# npm run bench compares against Debian's ftp-proxy (the SuSE proxy-suite, a userland relay). It is never
# installed: its /usr/sbin/ftp-proxy would shadow ours on PATH. Its .deb is unpacked into a private cache
# instead (below), where only the bench's lab runs it.
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  # Keep package scripts from starting daemons (proftpd, ftp-proxy) on the host: the lab starts its own, in namespaces.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && made_policy=1; fi
  ok=1
  { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/ftp-proxy-apt.log 2>&1 || ok=0
  [ $made_policy = 1 ] && rm -f $policy
  # Installing enables a package's service for the next boot (proftpd on port 21): undo that, the lab
  # starts its own servers in namespaces and the host must stay as it was.
  for unit in proftpd.service proftpd.socket; do
    if [ -e "/etc/systemd/system/multi-user.target.wants/$unit" ] || [ -e "/etc/systemd/system/sockets.target.wants/$unit" ]; then
      deb-systemd-helper disable "$unit" >/dev/null 2>&1 || systemctl disable "$unit" >/dev/null 2>&1 || true
      rm -f "/etc/systemd/system/multi-user.target.wants/$unit" "/etc/systemd/system/sockets.target.wants/$unit"
    fi
  done
  if [ $ok = 0 ]; then
    echo "deps: could not install ${missing[*]} (log: /tmp/ftp-proxy-apt.log); install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# Debian packages used only from a private directory, never installed (they would conflict with proftpd
# or shadow ftp-proxy on PATH): fetched with apt-get download, unpacked with dpkg-deb -x.
# FTP_PROXY_DEBS overrides the cache directory.
debs=${FTP_PROXY_DEBS:-/var/cache/ftp-proxy-test/debs}
unpack() { # package, a file it must provide
  local pkg=$1 want=$2
  [ -e "$debs/$pkg/root$want" ] && return 0
  mkdir -p "$debs/$pkg"
  (cd "$debs/$pkg" && rm -f ./*.deb &&
    { apt-get download -qq "$pkg" >/dev/null 2>&1 || { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 && apt-get download -qq "$pkg"; }; } &&
    rm -rf root && dpkg-deb -x ./*.deb root) >>/tmp/ftp-proxy-apt.log 2>&1 || true
  if [ ! -e "$debs/$pkg/root$want" ]; then
    echo "deps: could not fetch Debian's $pkg into $debs (log: /tmp/ftp-proxy-apt.log); it needs apt-get download $pkg to work" >&2
    exit 1
  fi
}
unpack ftp-proxy /usr/sbin/ftp-proxy
# FTPS servers of the TLS lab (test/helpers/tls-lab.ts); they conflict with proftpd as packages.
unpack vsftpd /usr/sbin/vsftpd
unpack pure-ftpd /usr/sbin/pure-ftpd

if [ ! -x node_modules/.bin/tsc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
