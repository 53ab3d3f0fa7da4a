#!/usr/bin/env bash
# Memory per idle terminal (socket + one channel), pty and ssh, on the release binary:
#   load-tests/idle-memory.sh              # N=200 connections each, RSS per connection
#   N=50 MASSIF=1 load-tests/idle-memory.sh  # the gateway under valgrind massif; prints
#                                          # where the heap goes (ms_print of the run)
# Loopback only; the gateway and sshd are stopped on exit.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"
N=${N:-200}
cargo build -q --release -p opsgate -p opsgate-load || exit 1
LOAD="$LT_ROOT/target/release/opsgate-load"
BIN="$LT_ROOT/target/release/opsgate"
lt_init
for target in pty ssh; do
  if [ "${MASSIF:-0}" = 1 ]; then
    wrapper="$LT_TMP/massif-$target.sh"
    printf '#!/bin/sh\nexec valgrind --tool=massif --threshold=0.5 --detailed-freq=1 --massif-out-file=%s %s "$@"\n' \
      "$LT_TMP/massif-$target.out" "$BIN" >"$wrapper"
    chmod +x "$wrapper"
    lt_start_gateway "$wrapper" || exit 1
    sleep 5
  else
    lt_start_gateway "$BIN" || exit 1
  fi
  [ -n "${SSHD_PORT:-}" ] || lt_start_sshd || exit 1
  export OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD" LOAD_SSH_PASSWORD="$LT_SSH_PASSWORD"
  og=(--url "$GW_URL" --gateway-pid "$GW_PID")
  if [ "$target" = pty ]; then
    timeout 600 "$LOAD" idle --sessions "$N" --settle 3 "${og[@]}" --program echo
  else
    timeout 600 "$LOAD" idle --sessions "$N" --settle 3 "${og[@]}" --target opsgate-ssh \
      --ssh-port "$SSHD_PORT" --ssh-user "$LT_SSH_USER"
  fi
  kill -TERM "$GW_PID" 2>/dev/null
  for _ in $(seq 1 30); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 1; done
  if [ "${MASSIF:-0}" = 1 ]; then
    lt_log "massif profile of the $target run: $LT_TMP/massif-$target.out"
    ms_print "$LT_TMP/massif-$target.out" | head -60
  fi
done
