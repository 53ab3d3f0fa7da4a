#!/usr/bin/env bash
# Smoke run of every opsgate-load scenario with tiny numbers against a gateway (and an
# sshd fixture) it starts itself. Checks that the tool works and reports, not that the
# figures meet targets. Needs no peers. Exits non-zero if any scenario fails.
#
#   load-tests/smoke.sh                 # debug build (what the test command has built)
#   LOAD_PROFILE=release load-tests/smoke.sh
#
# Bounded: every scenario runs under `timeout`; the whole run takes well under a minute
# once built. Everything it starts is stopped on exit.
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
# The apps poller runs every second with short checks, for the tiny apps-poll run.
export OPSGATE_APPS__POLL_INTERVAL_SECS=1 OPSGATE_APPS__POLL_TIMEOUT_SECS=2
lt_start_gateway "$GW_BIN" || exit 1
have_sshd=1
lt_start_sshd || { have_sshd=0; lt_log "no sshd fixture (not root or no openssh-server): ssh scenarios fail"; }

export OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD"
export LOAD_SSH_PASSWORD="$LT_SSH_PASSWORD"
common=(--url "$GW_URL" --gateway-pid "$GW_PID")
out="$LT_TMP/smoke.jsonl"
passed=0
failed=()

run() {
  local name=$1
  shift
  lt_log "smoke: $name"
  if timeout 45 "$LOAD" "$@" --json "$out"; then
    passed=$((passed + 1))
  else
    failed+=("$name")
  fi
}

run connect connect "${common[@]}" --sockets 20 --rate 200 --hold 1 --with-channel 4 --sockets-per-login 8
run echo echo "${common[@]}" --program echo --channels 1,4 --per-socket 2 --duration 1.5 --interval-ms 50
run throughput throughput "${common[@]}" --program bulk_small --channels 2 --bytes 1048576
run reconnect reconnect "${common[@]}" --program echo --sockets 8 --burst 4096 --sockets-per-login 4
run reconnect-partial reconnect "${common[@]}" --program echo --sockets 4 --burst 393216 --partial-acks
run idle idle "${common[@]}" --program echo --sessions 4 --settle 0.5
run bare-pty echo --target bare --channels 1 --duration 1 --interval-ms 50
run bare-pty-throughput throughput --target bare --command "head -c 786432 /dev/urandom | base64 -w 0" --bytes 1048576
if [ "$have_sshd" = 1 ]; then
  ssh_common=(--ssh-port "$SSHD_PORT" --ssh-user "$LT_SSH_USER")
  run ssh ssh "${common[@]}" "${ssh_common[@]}" --channels 2 --per-socket 2 --duration 1.5 --interval-ms 50 --bytes 1048576
  run ssh-cli echo --target ssh-cli "${ssh_common[@]}" --ssh-key "$SSH_KEY" --channels 1 --duration 1 --interval-ms 50
  run apps-poll apps-poll "${common[@]}" "${ssh_common[@]}" --servers 10 --unreachable-pct 20
else
  failed+=("ssh (no sshd fixture)")
fi

# Every scenario must have written result rows.
rows=$(grep -c '"scenario"' "$out" 2>/dev/null || echo 0)
if [ "$rows" -lt "$passed" ]; then failed+=("json rows ($rows for $passed scenarios)"); fi

# The NetBox import benchmark, tiny (200 devices over 4 sites; a few seconds): its own
# script, gateway and fixture, so it counts after the JSON-row check.
lt_log "smoke: netbox_import"
if LOAD_PROFILE="$profile" NB_DEVICES=200 NB_SITES=4 timeout 90 "$LT_DIR/netbox_import.sh" >&2; then
  passed=$((passed + 1))
else
  failed+=("netbox_import")
fi

if [ "${#failed[@]}" -gt 0 ]; then
  lt_log "opsgate-load smoke FAILED: ${failed[*]} ($passed scenarios ok)"
  echo "--- gateway log (tail)" >&2
  tail -n 30 "$LT_TMP/gateway/gateway.log" >&2
  exit 1
fi
lt_log "opsgate-load smoke: all $passed scenarios ok"
