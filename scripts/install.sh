#!/usr/bin/env bash
# install.sh: put ftp-proxy's system files in place after `npm install -g`, or take them out again.
#
# usage: install.sh [--root DIR] [--bin PATH] [--uninstall]
#
#   /usr/local/lib/systemd/system/ftp-proxy.service   the unit, ExecStart naming our binary by full path
#   /usr/local/lib/sysusers.d/ftp-proxy.conf          the unprivileged user the unit runs as
#   /usr/local/sbin/ftp-proxy-watchdog                the cron watchdog (restarts with the recorded command)
#   /usr/local/share/man/man8/ftp-proxy.8             the man page (unless npm already linked it there)
#   /usr/local/share/bash-completion/completions/ftp-proxy, /usr/local/share/zsh/site-functions/_ftp-proxy
#   /etc/ftp-proxy/*.policy                           the example policies; an existing file is never replaced
#
# Paths are under --root DIR (default /), as for an image being built. --bin is our command's full path
# (default: <npm prefix>/bin/ftp-proxy when this script runs from an npm install, else
# /usr/local/bin/ftp-proxy); never Debian's or OpenBSD's own ftp-proxy, which are other programs.
# What was installed is listed, with checksums, in /usr/local/share/ftp-proxy/installed; --uninstall
# removes exactly those files (and the directories it created, once empty), except configuration an
# admin changed since, which it keeps and names. The user is not removed (files may still be owned by
# it), and nothing is enabled or started: see the lines printed at the end.
set -euo pipefail

root=/
bin=
uninstall=0
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --bin) bin=${2:?--bin needs a path}; shift 2 ;;
    --bin=*) bin=${1#*=}; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: install.sh [--root DIR] [--bin PATH] [--uninstall]" >&2; exit 2 ;;
  esac
done

pkg=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
root=${root%/}
manifest_rel=/usr/local/share/ftp-proxy/installed
manifest=$root$manifest_rel
say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }
sum() { sha256sum "$1" | cut -d' ' -f1; }

# systemctl only for the running system, never for another root.
live() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

if [ "$uninstall" = 1 ]; then
  [ -f "$manifest" ] || die "nothing to uninstall: $manifest is missing"
  if live && { systemctl is-enabled --quiet ftp-proxy.service 2>/dev/null || systemctl is-active --quiet ftp-proxy.service 2>/dev/null; }; then
    systemctl disable --now ftp-proxy.service && say "stopped and disabled ftp-proxy.service"
  fi
  dirs=()
  while read -r kind hash path; do
    case $kind in
      dir) dirs+=("$path") ;;
      file | conf)
        [ -e "$root$path" ] || [ -L "$root$path" ] || continue
        if [ "$kind" = conf ] && [ "$(sum "$root$path")" != "$hash" ]; then
          say "kept $path: changed since it was installed (remove it yourself if you no longer want it)"
          continue
        fi
        rm -f "$root$path"
        ;;
    esac
  done <"$manifest"
  rm -f "$manifest"
  # Deepest first (the manifest lists a directory before those inside it); only the directories this
  # script made, and only when nothing else is in them.
  for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do rmdir "$root${dirs[$i]}" 2>/dev/null || true; done
  if live; then systemctl daemon-reload; fi
  say "uninstalled from ${root:-/}; the system user stays (systemd-sysusers never removes users)"
  exit 0
fi

# ---- install ----

if [ -z "$bin" ]; then
  # <prefix>/lib/node_modules/ftp-proxy is an npm install; its command is <prefix>/bin/ftp-proxy.
  case $pkg in
    */lib/node_modules/ftp-proxy) bin=${pkg%/lib/node_modules/ftp-proxy}/bin/ftp-proxy ;;
    *) bin=/usr/local/bin/ftp-proxy ;;
  esac
fi
case $bin in /*) ;; *) die "--bin must be a full path: $bin" ;; esac
[ -f "$pkg/dist/cli.js" ] || die "$pkg/dist/cli.js is missing: npm run build first"
if [ ! -x "$bin" ]; then
  say "warning: $bin does not exist yet (npm install -g first, or name it with --bin)"
elif ! "$bin" --version 2>/dev/null | grep -q '^ftp-proxy [0-9]'; then
  die "$bin is not this ftp-proxy (Debian's and OpenBSD's own ftp-proxy are other programs): name ours with --bin"
fi

unit_src=$pkg/scripts/ftp-proxy.service
# The user the unit runs as: its User=, or the --user of its ExecStart.
user=$(sed -n 's/^User=//p' "$unit_src" | head -1)
[ -n "$user" ] || user=$(sed -n 's/^ExecStart=.*--user[= ]\([^ ]*\).*/\1/p' "$unit_src" | head -1)
[ -n "$user" ] || user=_ftp-proxy

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The previous manifest (a re-install): its files may be replaced, its config files if unchanged.
declare -A ours=()
if [ -f "$manifest" ]; then
  while read -r kind hash path; do ours[$path]=$kind:$hash; done <"$manifest"
fi
: >"$tmp/manifest"

# Create the parents of a path, recording the ones that did not exist.
mkparents() {
  local d=${1%/*} missing=()
  while [ -n "$d" ] && [ ! -d "$root$d" ]; do
    missing=("$d" "${missing[@]}")
    d=${d%/*}
  done
  for d in "${missing[@]}"; do
    install -d -m 0755 "$root$d"
    echo "dir - $d" >>"$tmp/manifest"
  done
}
# Directories made by an earlier install stay recorded for --uninstall.
if [ -f "$manifest" ]; then grep '^dir ' "$manifest" >>"$tmp/manifest" || true; fi

# put KIND MODE SRC PATH: install a file. KIND conf: never replace an existing file that is not an
# unchanged copy of ours.
put() {
  local kind=$1 mode=$2 src=$3 path=$4 dst=$root$4
  if [ -e "$dst" ] || [ -L "$dst" ]; then
    local prev=${ours[$path]:-}
    if [ -L "$dst" ] && [ "$(readlink -f "$dst")" = "$(readlink -f "$src")" ]; then
      say "$path: already there (a link to this package, e.g. npm's), left as it is"
      return 0
    fi
    if [ -z "$prev" ]; then
      if cmp -s "$src" "$dst"; then return 0; fi
      say "$path exists and is not ours: left as it is"
      return 0
    fi
    if [ "$kind" = conf ] && [ "$(sum "$dst")" != "${prev#*:}" ]; then
      say "$path: changed by you since it was installed, left as it is"
      echo "${prev%%:*} ${prev#*:} $path" >>"$tmp/manifest"
      return 0
    fi
  fi
  mkparents "$path"
  install -m "$mode" "$src" "$dst"
  echo "$kind $(sum "$dst") $path" >>"$tmp/manifest"
}

# The unit, calling our command by its full path (ExecStart, and ExecReload's --check-config).
sed -E "s#^(ExecStart|ExecReload)=/usr/local/bin/ftp-proxy\b#\1=$bin#" "$unit_src" >"$tmp/ftp-proxy.service"
grep -q "^ExecStart=$bin\b" "$tmp/ftp-proxy.service" || die "$unit_src: no ExecStart=/usr/local/bin/ftp-proxy line to point at $bin"
put file 0644 "$tmp/ftp-proxy.service" /usr/local/lib/systemd/system/ftp-proxy.service

printf '# The user ftp-proxy.service runs as (installed by ftp-proxy'"'"'s scripts/install.sh).\nu %s - "ftp-proxy daemon" - -\n' "$user" >"$tmp/sysusers.conf"
put file 0644 "$tmp/sysusers.conf" /usr/local/lib/sysusers.d/ftp-proxy.conf

put file 0755 "$pkg/scripts/ftp-proxy-watchdog" /usr/local/sbin/ftp-proxy-watchdog
put file 0644 "$pkg/man/ftp-proxy.8" /usr/local/share/man/man8/ftp-proxy.8

node=$(command -v node || true)
[ -n "$node" ] || die "node is not on PATH"
"$node" "$pkg/dist/cli.js" completion bash >"$tmp/ftp-proxy.bash"
"$node" "$pkg/dist/cli.js" completion zsh >"$tmp/_ftp-proxy"
put file 0644 "$tmp/ftp-proxy.bash" /usr/local/share/bash-completion/completions/ftp-proxy
put file 0644 "$tmp/_ftp-proxy" /usr/local/share/zsh/site-functions/_ftp-proxy

# The unit's flags (its EnvironmentFile): an admin's file is kept.
put conf 0644 "$pkg/scripts/ftp-proxy.conf" /etc/ftp-proxy/ftp-proxy.conf
for f in "$pkg"/policy-examples/*; do
  [ -f "$f" ] && put conf 0644 "$f" "/etc/ftp-proxy/${f##*/}"
done

mkparents "$manifest_rel"
# Sorted, so that a re-install writes the same file, and a directory comes before those inside it.
LC_ALL=C sort -u "$tmp/manifest" >"$tmp/manifest.sorted"
install -m 0644 "$tmp/manifest.sorted" "$manifest"

say "installed into ${root:-/} for $bin (the unit runs it as user $user)"
if [ -z "$root" ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then systemd-sysusers /usr/local/lib/sysusers.d/ftp-proxy.conf; fi
  if live; then systemctl daemon-reload; fi
  cat <<EOF
next:
  your firewall: a drop-in from $pkg/nftables-examples/ (or iptables-examples/), see the README
  your flags: FTP_PROXY_FLAGS="..." in /etc/ftp-proxy/ftp-proxy.conf
  systemctl enable --now ftp-proxy
EOF
else
  echo "next: systemd-sysusers --root ${root} creates the user $user"
fi
