#!/usr/bin/env bash
# Syscalls the gateway makes per keystroke echo through a `pty` terminal (or an `ssh`
# one to the load-test sshd with TARGET=ssh): `strace -f -c` attached to the release
# gateway while `opsgate-load echo` types a keystroke every 20 ms for DURATION seconds
# (default 10, ~500 keystrokes). Divide the counts by the keystrokes to see how many
# reads, writes and wake-ups one echo costs.
#   load-tests/echo-syscalls.sh
#   TARGET=ssh BIN=/tmp/other/opsgate load-tests/echo-syscalls.sh   # another build
# Loopback only; the gateway is stopped on exit. Needs strace (Debian's package).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"
DURATION=${DURATION:-10}
command -v strace >/dev/null || { lt_log "needs strace (apt-get install strace)"; exit 1; }
cargo build -q --release -p opsgate -p opsgate-load || exit 1
LOAD="$LT_ROOT/target/release/opsgate-load"
lt_init
lt_start_gateway "${BIN:-$LT_ROOT/target/release/opsgate}" || exit 1
export OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD"
if [ "${TARGET:-pty}" = ssh ]; then
  lt_start_sshd || exit 1
  export LOAD_SSH_PASSWORD="$LT_SSH_PASSWORD"
  og=(--url "$GW_URL" --gateway-pid "$GW_PID" --target opsgate-ssh --ssh-port "$SSHD_PORT"
    --ssh-user "$LT_SSH_USER")
else
  og=(--url "$GW_URL" --gateway-pid "$GW_PID" --program echo)
fi
# Warm-up: the first terminal's one-time work is not counted.
timeout 60 "$LOAD" echo --channels 1 --interval-ms 20 --duration 3 "${og[@]}" >/dev/null
strace -f -c -o "$LT_TMP/strace.txt" -p "$GW_PID" 2>/dev/null &
tracer=$!
sleep 1
timeout 120 "$LOAD" echo --channels 1 --interval-ms 20 --duration "$DURATION" "${og[@]}"
kill -INT "$tracer"
wait "$tracer" 2>/dev/null
head -20 "$LT_TMP/strace.txt"
