#!/usr/bin/env bash
# ftp-proxy, shown end to end on this machine (as root), in three network namespaces it creates and
# removes again:
#
#   client 192.168.1.10 --- [firewall: default-deny nftables + ftp-proxy] --- 198.51.100.21 server (proftpd)
#
# It loads nftables-examples/forward-redirect.nft as shipped, starts the proxy with its default flags
# (plus -d -D6 so you see its log), downloads a 20 MiB file in passive and in active mode, shows the
# pinholes the proxy holds while each transfer runs, checks the sha256, and shows that nothing is left.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "the demo needs root (network namespaces, nftables): run it as root" >&2
  exit 1
fi
scripts/deps.sh

export LAB=ftpdemo$$
LABSH=scripts/lab.sh
FW=$LAB-fw
proxy_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  $LABSH down >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building the lab: client, firewall and server namespaces; proftpd on the server"
$LABSH up forward
$LABSH status | sed 's/^/   /'

say "Loading nftables-examples/forward-redirect.nft on the firewall (default deny; the ftp-proxy lines:)"
$LABSH fw-load nftables-examples/forward-redirect.nft
grep -n 'ftp-proxy' nftables-examples/forward-redirect.nft | grep -v '^[0-9]*:#' | sed 's/^/   /'

say "Control: without the proxy, FTP through this firewall fails"
if TMO=2 MAXT=5 $LABSH get curl pasv small.txt 2>/dev/null; then
  echo "   unexpected: the transfer worked without the proxy" >&2
  exit 1
fi
echo "   (failed, as it must)"

say "Starting the proxy in the firewall namespace: ftp-proxy -d -D6"
ip netns exec "$FW" node dist/cli.js -d -D6 > >(sed -u 's/^/   proxy| /') 2>&1 &
proxy_pid=$!
for _ in $(seq 50); do
  ip netns exec "$FW" nft list table inet ftp-proxy >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 0.3

show_pinholes() {
  # While the transfer runs: the elements the proxy put into its own table (they go when the session ends).
  for _ in $(seq 30); do
    listing=$(ip netns exec "$FW" nft list table inet ftp-proxy 2>/dev/null || true)
    if grep -q 'comment "' <<<"$listing"; then
      echo "   live pinhole elements in table inet ftp-proxy:"
      awk '/^\t(set|map) /{name=$2} /elements = /{sub(/^[ \t]*elements = /,""); print "     " name ": " $0}' <<<"$listing"
      if grep -A4 'set once4' <<<"$listing" | grep -q 'elements'; then
        echo "   (once4 is the single-use gate: the data connection's first SYN consumes it)"
      else
        echo "   (no once4 element: the data connection consumed it; a second connection to that port finds no pinhole)"
      fi
      echo "   the same, as \`ftp-proxy status\` reads it from the kernel:"
      ip netns exec "$FW" node dist/cli.js status --backend nftables | sed 's/^/     /'
      return
    fi
    sleep 0.1
  done
  echo "   (no pinhole seen)"
}

for mode in pasv port; do
  say "Downloading test20M.bin in $( [ $mode = pasv ] && echo passive || echo active ) mode with lftp (rate-limited so we can watch)"
  RATE=6M $LABSH get lftp $mode test20M.bin | sed 's/^/   client| /' &
  get_pid=$!
  show_pinholes
  wait $get_pid
  sleep 0.3
  n=$(ip netns exec "$FW" nft list table inet ftp-proxy | grep -c 'comment "' || true)
  echo "   pinhole elements after the session: $n"
done

say "Stopping the proxy (SIGTERM): its table goes with it"
kill "$proxy_pid"
wait "$proxy_pid" 2>/dev/null || true
proxy_pid=
sleep 0.2
if ip netns exec "$FW" nft list table inet ftp-proxy >/dev/null 2>&1; then echo "   table inet ftp-proxy still there" >&2; exit 1; fi
echo "   table inet ftp-proxy: gone"

say "Removing the lab"
$LABSH down
trap - EXIT INT TERM
echo "   done: namespaces, processes and rules removed"
