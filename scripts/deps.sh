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
openssl:openssl bc:bc ip:iproute2 mandoc:mandoc man:man-db python3:python3"
missing=()
for pair in $wanted; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
ldconfig -p 2>/dev/null | grep -q 'libnftables\.so\.1 ' || missing+=(libnftables1)
# npm run bench compares against Debian's ftp-proxy (the SuSE proxy-suite, a userland relay). Its binary is
# /usr/sbin/ftp-proxy, which the bench runs by that path, only in its lab; the package leaves
# RUN_DAEMON=no in /etc/default/ftp-proxy, so its init script never starts one on the host.
[ -x /usr/sbin/ftp-proxy ] || missing+=(ftp-proxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  # Keep package scripts from starting daemons (proftpd, ftp-proxy) on the host: the lab starts its own, in namespaces.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && made_policy=1; fi
  ok=1
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/ftp-proxy-apt.log 2>&1 || ok=0
  [ $made_policy = 1 ] && rm -f $policy
  if [ $ok = 0 ]; then
    echo "deps: could not install ${missing[*]} (log: /tmp/ftp-proxy-apt.log); install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x node_modules/.bin/tsc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
