#!/usr/bin/env bash
# Issue 14's poller figures: one gateway, one real sshd, N linux servers (10 % unreachable:
# half closed ports, half a blackholed listener in opsgate-load) polled at concurrency 16.
# Prints one cold and one warm round (wall time, gateway CPU, SSH logins).
#
#   load-tests/apps-poll.sh                       # 200 servers, debug build
#   LOAD_PROFILE=release load-tests/apps-poll.sh
#   load-tests/apps-poll.sh --servers 20          # extra args go to opsgate-load apps-poll
#
# Bounded: opsgate-load waits at most 300 s per round and runs under `timeout`.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"

profile="${LOAD_PROFILE:-debug}"
flag=()
[ "$profile" = release ] && flag=(--release)
lt_log "building opsgate and opsgate-load ($profile)"
cargo build -q "${flag[@]}" -p opsgate -p opsgate-load || exit 1
GW_BIN="$LT_ROOT/target/$profile/opsgate"
LOAD="$LT_ROOT/target/$profile/opsgate-load"

lt_init
export OPSGATE_APPS__POLL_INTERVAL_SECS="${POLL_INTERVAL_SECS:-2}"
export OPSGATE_APPS__POLL_CONCURRENCY="${POLL_CONCURRENCY:-16}"
export OPSGATE_APPS__POLL_TIMEOUT_SECS="${POLL_TIMEOUT_SECS:-10}"
lt_start_gateway "$GW_BIN" || exit 1
lt_start_sshd || { lt_log "needs the sshd fixture (root, openssh-server)"; exit 1; }
export OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD"
export LOAD_SSH_PASSWORD="$LT_SSH_PASSWORD"
timeout 900 "$LOAD" apps-poll --url "$GW_URL" --gateway-pid "$GW_PID" \
  --ssh-port "$SSHD_PORT" --ssh-user "$LT_SSH_USER" "$@"
