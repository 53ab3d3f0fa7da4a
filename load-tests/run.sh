#!/usr/bin/env bash
# The opsgate scenarios of issue 4 at their targets, in one command: builds the release
# binaries, starts the gateway (temp data dir) and an sshd fixture on loopback, runs every
# scenario, writes tables to load-tests/out/<stamp>/, and stops everything it started.
#
#   load-tests/run.sh            # full run (about 10 minutes on 2 cores)
#   load-tests/run.sh --quick    # smaller numbers, a minute or two
#   load-tests/run.sh --peers    # then the side-by-side comparison (compare.sh)
#
# Must run as root for the sshd fixture (a throwaway local user); traffic stays on
# 127.0.0.1. The gateway and this script raise RLIMIT_NOFILE to the hard limit.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"

quick=0
peers=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --peers) peers=1 ;;
    *) echo "usage: $0 [--quick] [--peers]" >&2; exit 2 ;;
  esac
done

lt_log "building release binaries"
cargo build -q --release -p opsgate -p opsgate-load || exit 1
LOAD="$LT_ROOT/target/release/opsgate-load"
stamp=$(date +%Y%m%d-%H%M%S)
OUT="$LT_DIR/out/$stamp"
mkdir -p "$OUT"
json="$OUT/opsgate.jsonl"

lt_init
lt_start_gateway "$LT_ROOT/target/release/opsgate" || exit 1
lt_start_sshd || { lt_log "sshd fixture needed (root, openssh-server)"; exit 1; }
export OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD" LOAD_SSH_PASSWORD="$LT_SSH_PASSWORD"
gw=(--url "$GW_URL" --gateway-pid "$GW_PID" --json "$json")
ssh=(--ssh-port "$SSHD_PORT" --ssh-user "$LT_SSH_USER")

if [ "$quick" = 1 ]; then
  SOCKETS=1000 WITH_CHANNEL=100 ECHO_CHANNELS=100 SWEEP=1,10,100,250 STORM=100 DUR=5 REPEAT=1
else
  SOCKETS=10000 WITH_CHANNEL=1000 ECHO_CHANNELS=1000 SWEEP=1,10,100,250,500,1000,1500,2000 STORM=1000 DUR=20 REPEAT=3
fi

failures=()
step() {
  local name=$1
  shift
  lt_log "== $name"
  { echo "\$ opsgate-load $*"; timeout 900 "$LOAD" "$@"; } 2>&1 | tee -a "$OUT/run.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || failures+=("$name")
}

{
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
  grep -m1 'model name' /proc/cpuinfo
  echo "nofile: $(ulimit -n); opsgate $(git -C "$LT_ROOT" rev-parse --short HEAD)"
} | tee "$OUT/machine.txt"

step connect connect "${gw[@]}" --sockets "$SOCKETS" --rate 1000 --hold 10 --with-channel "$WITH_CHANNEL" --program echo
# The same on a fresh gateway with a single login: 625 password hashes leave hundreds of
# MiB with the allocator, which later sockets reuse, hiding their own cost.
lt_stop_gateway
lt_start_gateway "$LT_ROOT/target/release/opsgate" || exit 1
gw=(--url "$GW_URL" --gateway-pid "$GW_PID" --json "$json")
step connect-1-login connect "${gw[@]}" --sockets "$SOCKETS" --rate 1000 --hold 5 --with-channel "$WITH_CHANNEL" --program echo --sockets-per-login "$SOCKETS" --label opsgate-1-login
step echo-1 echo "${gw[@]}" --program echo --channels 1 --interval-ms 100 --duration "$((DUR * 3))"
step echo-1-fast echo "${gw[@]}" --program echo --channels 1 --interval-ms 10 --duration "$DUR"
step echo-many echo "${gw[@]}" --program echo --channels "$ECHO_CHANNELS" --per-socket 10 --interval-ms 100 --duration "$DUR"
step echo-sweep echo "${gw[@]}" --program echo --channels "$SWEEP" --per-socket 10 --interval-ms 100 --duration 10
step throughput-1 throughput "${gw[@]}" --program bulk --channels 1 --repeat "$REPEAT"
step throughput-4 throughput "${gw[@]}" --program bulk --channels 4
step throughput-held throughput "${gw[@]}" --program bulk_small --channels 100 --bytes 1048576 --hold-secs 3
step ssh ssh "${gw[@]}" "${ssh[@]}" --channels 1 --interval-ms 100 --duration "$DUR"
step ssh-throughput throughput "${gw[@]}" "${ssh[@]}" --target opsgate-ssh --channels 1 --repeat "$REPEAT"
step reconnect reconnect "${gw[@]}" --program echo --sockets "$STORM" --burst 16384
# Slow renderers: half of each ack withheld, and a burst larger than both windows.
step reconnect-partial reconnect "${gw[@]}" --program echo --sockets "$((STORM / 5))" --burst 393216 --partial-acks
step reconnect-partial-storm reconnect "${gw[@]}" --program echo --sockets "$STORM" --burst 16384 --partial-acks

lt_log "tables in $OUT/run.log, rows in $json"
if [ "$peers" = 1 ]; then
  lt_cleanup
  "$LT_DIR/compare.sh" || failures+=(compare)
fi
if [ "${#failures[@]}" -gt 0 ]; then
  lt_log "failed: ${failures[*]}"
  exit 1
fi
