#!/usr/bin/env bash
# A three-host FTP lab in network namespaces, for the demo and the end-to-end tests:
#
#   forward:  <lab>-cli 192.168.1.10 --- lan 192.168.1.1 [<lab>-fw] wan 198.51.100.1 --- 198.51.100.21 <lab>-srv
#                       2001:db8:1::10       2001:db8:1::1            2001:db8:2::1      2001:db8:2::21
#   reverse:  <lab>-cli 203.0.113.50 --- wan 203.0.113.5 [<lab>-fw] lan 10.0.0.1     --- 10.0.0.21     <lab>-srv
#                       2001:db8:3::50       2001:db8:3::5            2001:db8:4::1      2001:db8:4::21
#
# The addresses and interface names are those of nftables-examples/, so the examples load as shipped.
# Nothing is created in the root namespace; all traffic stays inside the lab. proftpd runs in <lab>-srv.
#
# usage: lab.sh up forward|reverse | down | ftpd-start | ftpd-stop | ftpd-restart [DIRECTIVE...] | fw-load FILE |
#               get CLIENT MODE FILE [HOST [PORT]] | ns ROLE | status
# env:   LAB=name (default ftpp), LAB_RUN=dir (default /dev/shm/$LAB), FAMILY=4|6 (for get)
set -euo pipefail

LAB=${LAB:-ftpp}
RUN=${LAB_RUN:-/dev/shm/$LAB}
DATA=$RUN/data
DL=$RUN/dl
CLI=$LAB-cli FW=$LAB-fw SRV=$LAB-srv

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
die() { echo "lab.sh: $*" >&2; exit 1; }

mode() { cat "$RUN/mode" 2>/dev/null || echo forward; }
srv_addr() { [ "$(mode)" = reverse ] && echo 10.0.0.21 || echo 198.51.100.21; }
srv_addr6() { [ "$(mode)" = reverse ] && echo 2001:db8:4::21 || echo 2001:db8:2::21; }
# What the client dials: the server (forward) or the firewall's public address (reverse).
target_addr() {
  if [ "${FAMILY:-4}" = 6 ]; then
    [ "$(mode)" = reverse ] && echo 2001:db8:3::5 || echo 2001:db8:2::21
  else
    [ "$(mode)" = reverse ] && echo 203.0.113.5 || echo 198.51.100.21
  fi
}

up() {
  local m=${1:-forward}
  [ "$m" = forward ] || [ "$m" = reverse ] || die "up: mode must be forward or reverse"
  for ns in "$CLI" "$FW" "$SRV"; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
  done
  mkdir -p "$RUN" "$DATA" "$DL"
  echo "$m" >"$RUN/mode"
  local cif sif
  if [ "$m" = forward ]; then cif=lan sif=wan; else cif=wan sif=lan; fi
  # veth pairs are created inside the namespaces: nothing appears in the root namespace
  ip -n "$CLI" link add eth0 type veth peer name "$cif" netns "$FW"
  ip -n "$SRV" link add eth0 type veth peer name "$sif" netns "$FW"
  # nodad: IPv6 addresses usable at once, no duplicate address detection delay
  if [ "$m" = forward ]; then
    ip -n "$CLI" addr add 192.168.1.10/24 dev eth0
    ip -n "$CLI" addr add 2001:db8:1::10/64 dev eth0 nodad
    ip -n "$FW" addr add 192.168.1.1/24 dev lan
    ip -n "$FW" addr add 2001:db8:1::1/64 dev lan nodad
    ip -n "$FW" addr add 198.51.100.1/24 dev wan
    ip -n "$FW" addr add 2001:db8:2::1/64 dev wan nodad
    ip -n "$SRV" addr add 198.51.100.21/24 dev eth0
    ip -n "$SRV" addr add 2001:db8:2::21/64 dev eth0 nodad
  else
    ip -n "$CLI" addr add 203.0.113.50/24 dev eth0
    ip -n "$CLI" addr add 2001:db8:3::50/64 dev eth0 nodad
    ip -n "$FW" addr add 203.0.113.5/24 dev wan
    ip -n "$FW" addr add 2001:db8:3::5/64 dev wan nodad
    ip -n "$FW" addr add 10.0.0.1/24 dev lan
    ip -n "$FW" addr add 2001:db8:4::1/64 dev lan nodad
    ip -n "$SRV" addr add 10.0.0.21/24 dev eth0
    ip -n "$SRV" addr add 2001:db8:4::21/64 dev eth0 nodad
  fi
  ip -n "$CLI" link set eth0 up
  ip -n "$FW" link set lan up
  ip -n "$FW" link set wan up
  ip -n "$SRV" link set eth0 up
  if [ "$m" = forward ]; then
    ip -n "$CLI" route add default via 192.168.1.1
    ip -n "$CLI" -6 route add default via 2001:db8:1::1
    ip -n "$SRV" route add default via 198.51.100.1
    ip -n "$SRV" -6 route add default via 2001:db8:2::1
  else
    ip -n "$CLI" route add default via 203.0.113.5
    ip -n "$CLI" -6 route add default via 2001:db8:3::5
    ip -n "$SRV" route add default via 10.0.0.1
    ip -n "$SRV" -6 route add default via 2001:db8:4::1
  fi
  nsx "$FW" sysctl -qw net.ipv6.conf.all.forwarding=1
  nsx "$FW" sysctl -qw net.ipv4.ip_forward=1
  [ -f "$DATA/test20M.bin" ] || head -c $((20 * 1024 * 1024)) /dev/urandom >"$DATA/test20M.bin"
  [ -f "$DATA/small.txt" ] || echo "hello through ftp-proxy" >"$DATA/small.txt"
  chmod 0755 "$RUN" "$DATA"
  chmod 0644 "$DATA"/*
  (cd "$DATA" && sha256sum -- * >"$RUN/sha256.txt")
  ftpd_start
}

ftpd_conf() {
  local hash
  hash=$(openssl passwd -1 -salt ftpplab lab)
  echo "lab:$hash:65534:65534::$DATA:/bin/false" >"$RUN/ftpd.passwd"
  chmod 0600 "$RUN/ftpd.passwd"
  cat >"$RUN/proftpd.conf" <<EOF
ServerName              "ftp-proxy lab server"
ServerType              standalone
DefaultServer           on
DefaultAddress          $(srv_addr) $(srv_addr6)
Port                    21
UseIPv6                 on
User                    nobody
Group                   nogroup
Umask                   022
MaxInstances            400
PidFile                 $RUN/proftpd.pid
ScoreboardFile          $RUN/proftpd.scoreboard
DelayEngine             off
WtmpLog                 off
UseReverseDNS           off
SystemLog               $RUN/proftpd.log
TransferLog             none
PassivePorts            50000 50999
AuthOrder               mod_auth_file.c
AuthUserFile            $RUN/ftpd.passwd
RequireValidShell       off
DefaultRoot             ~
AllowOverwrite          on
TimeoutIdle             300
EOF
  # Directives a test adds (lab.sh ftpd-restart "MasqueradeAddress 203.0.113.99").
  if [ -s "$RUN/proftpd.extra" ]; then cat "$RUN/proftpd.extra" >>"$RUN/proftpd.conf"; fi
}

ftpd_start() {
  ftpd_conf
  if [ -s "$RUN/proftpd.pid" ] && kill -0 "$(cat "$RUN/proftpd.pid")" 2>/dev/null; then return 0; fi
  nsx "$SRV" proftpd -t -c "$RUN/proftpd.conf" >/dev/null 2>"$RUN/proftpd.check" || die "proftpd config: $(cat "$RUN/proftpd.check")"
  nsx "$SRV" proftpd -n -c "$RUN/proftpd.conf" >>"$RUN/proftpd.out" 2>&1 &
  for _ in $(seq 100); do
    [ -s "$RUN/proftpd.pid" ] && nsx "$SRV" bash -c "exec 3<>/dev/tcp/$(srv_addr)/21" 2>/dev/null && return 0
    sleep 0.05
  done
  die "proftpd did not start: $(tail -3 "$RUN/proftpd.out" 2>/dev/null)"
}

ftpd_stop() {
  if [ -s "$RUN/proftpd.pid" ]; then
    local p
    p=$(cat "$RUN/proftpd.pid")
    kill "$p" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
    rm -f "$RUN/proftpd.pid"
  fi
}

# Load a ruleset into the firewall: first its "# setup:" lines (sysctls, policy routing), then the file.
fw_load() {
  local file=$1
  [ -f "$file" ] || die "fw-load: no such file $file"
  while IFS= read -r cmd; do
    # Loading a second time re-runs them; "ip route add" then says "File exists", which is fine.
    # shellcheck disable=SC2086
    nsx "$FW" $cmd 2>"$RUN/setup.err" || grep -q 'File exists' "$RUN/setup.err" || die "setup: $cmd: $(cat "$RUN/setup.err")"
  done < <(sed -n 's/^# setup: //p' "$file")
  case $file in
    *.nft) nsx "$FW" nft -f "$file" ;;
    # iptables-restore format; IPTABLES picks the variant (iptables, iptables-nft, iptables-legacy)
    *.v6.rules) ipt=${IPTABLES:-iptables}; nsx "$FW" "ip6${ipt#ip}-restore" "$file" ;;
    # A drop-in adds its chains to the rules already there, as its comment tells the admin to load it.
    */dropin-*.rules | dropin-*.rules) nsx "$FW" "${IPTABLES:-iptables}-restore" --noflush "$file" ;;
    *.rules) nsx "$FW" "${IPTABLES:-iptables}-restore" "$file" ;;
    *) die "fw-load: $file: expected .nft or .rules" ;;
  esac
}

down() {
  ftpd_stop
  # Servers a test started in this lab's namespaces (test/helpers/tls-lab.ts records their pids): only a
  # pid that still lives in one of them is ours to end.
  for f in "$RUN"/*.labpid; do
    [ -s "$f" ] || continue
    p=$(cat "$f")
    case " $(ip netns identify "$p" 2>/dev/null) " in " $CLI " | " $FW " | " $SRV ") kill "$p" 2>/dev/null || true ;; esac
  done
  if [ -s "$RUN/proxy.pid" ]; then kill "$(cat "$RUN/proxy.pid")" 2>/dev/null || true; fi
  for ns in "$CLI" "$FW" "$SRV"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$RUN"
}

# Download FILE from the lab server with a real client in a given data-connection mode, check sha256.
# Prints "<client> <mode> <file> OK <seconds>" or FAIL/BADSUM; exit status 0 only for OK.
get() {
  local client=$1 mode=$2 file=$3 host=${4:-$(target_addr)} port=${5:-21}
  local tmo=${TMO:-10} out=$DL/$file.$client.$mode.$$ cmd uhost=$host
  # an IPv6 literal in a URL needs brackets
  [[ $host == *:* ]] && uhost="[$host]"
  rm -f "$out"
  case $client in
    lftp)
      local opts
      case $mode in
        pasv) opts="set ftp:passive-mode on; set ftp:prefer-epsv off" ;;
        epsv) opts="set ftp:passive-mode on; set ftp:prefer-epsv on" ;;
        port) opts="set ftp:passive-mode off" ;;
        eprt)
          [ "${FAMILY:-4}" = 6 ] || die "get: lftp uses EPRT only over IPv6; use curl for eprt"
          opts="set ftp:passive-mode off"
          ;;
        *) die "get: unknown mode $mode" ;;
      esac
      [ -n "${RATE:-}" ] && opts="$opts; set net:limit-rate $RATE"
      cmd=(lftp -u lab,lab -e "set net:timeout $tmo; set net:max-retries 1; set net:reconnect-interval-base 1; set xfer:clobber on; set cmd:fail-exit yes; $opts; get $file -o $out; bye" "ftp://$uhost:$port")
      ;;
    curl)
      local opts=()
      case $mode in
        pasv) opts=(--disable-epsv) ;;
        epsv) opts=() ;;
        port) opts=(-P - --disable-eprt) ;;
        eprt) opts=(-P -) ;;
        *) die "get: unknown mode $mode" ;;
      esac
      [ -n "${RATE:-}" ] && opts+=(--limit-rate "$RATE")
      cmd=(curl -sS --connect-timeout "$tmo" --max-time "${MAXT:-120}" "${opts[@]}" -o "$out" "ftp://lab:lab@$uhost:$port/$file")
      ;;
    tnftp)
      local set
      case $mode in
        pasv) set="epsv4 off
passive on" ;;
        epsv) set="epsv4 on
passive on" ;;
        port) set="epsv4 off
passive off" ;;
        eprt) set="epsv4 on
passive off" ;;
        *) die "get: unknown mode $mode" ;;
      esac
      cmd=(bash -c "printf 'user lab lab\n%s\nbinary\nget %s %s\nbye\n' \"\$0\" \"\$1\" \"\$2\" | timeout ${MAXT:-120} tnftp -n $host $port" "$set" "$file" "$out")
      ;;
    *) die "get: unknown client $client" ;;
  esac
  local t0 t1 rc res want got
  t0=$(date +%s.%N)
  if nsx "$CLI" "${cmd[@]}" >"$DL/get.out" 2>&1; then rc=0; else rc=$?; fi
  t1=$(date +%s.%N)
  want=$(awk -v f="$file" '$2 == f { print $1 }' "$RUN/sha256.txt")
  if [ $rc -ne 0 ] || [ ! -s "$out" ]; then
    res=FAIL
  else
    got=$(sha256sum "$out" | cut -d' ' -f1)
    if [ "$got" = "$want" ]; then res=OK; else res=BADSUM; fi
  fi
  printf '%s %s %s %s %.3f\n' "$client" "$mode" "$file" "$res" "$(echo "$t1 - $t0" | bc -l)"
  if [ $res != OK ]; then sed 's/^/  /' "$DL/get.out" | head -5 >&2; fi
  rm -f "$out"
  [ $res = OK ]
}

status() {
  echo "lab $LAB ($(mode)), run dir $RUN"
  for ns in "$CLI" "$FW" "$SRV"; do echo "== $ns"; nsx "$ns" ip -br addr 2>/dev/null || true; done
}

cmd=${1:-}
shift || true
case $cmd in
  up) up "$@" ;;
  down) down ;;
  ftpd-start) ftpd_start ;;
  ftpd-stop) ftpd_stop ;;
  ftpd-restart)
    printf '%s\n' "$@" >"$RUN/proftpd.extra"
    ftpd_stop
    ftpd_start
    ;;
  fw-load) fw_load "$@" ;;
  get) get "$@" ;;
  ns) case ${1:-} in cli) echo "$CLI" ;; fw) echo "$FW" ;; srv) echo "$SRV" ;; *) die "ns cli|fw|srv" ;; esac ;;
  status) status ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
