#!/usr/bin/env bash
# Interleaved A/B of two gateway builds, or of one build under two settings, on one
# terminal: RUNS rounds of A then B, each run against a freshly started gateway (and the
# load-test sshd for `ssh`). Prints one table row per run, labelled A or B.
#   load-tests/ab.sh echo pty /tmp/a/opsgate /tmp/b/opsgate   # keystroke echo, 15 s
#   load-tests/ab.sh bulk ssh /tmp/a/opsgate /tmp/b/opsgate   # 64 MiB through ssh
#   A_ENV="OPSGATE_MEMORY__RELEASE_CODE_PAGES=false" B_ENV="OPSGATE_MEMORY__RELEASE_CODE_PAGES=true" \
#     load-tests/ab.sh echo pty target/release/opsgate target/release/opsgate
# RUNS (default 4), DURATION (echo seconds, default 15), INTERVAL_MS (default 20).
# REF=1 adds the reference (bare PTY or `ssh -tt`) after each A/B pair. Loopback only.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"
[ $# -eq 4 ] || { sed -n 2,10p "$0" >&2; exit 2; }
mode=$1 target=$2 bin_a=$3 bin_b=$4
RUNS=${RUNS:-4} DURATION=${DURATION:-15} INTERVAL_MS=${INTERVAL_MS:-20}
cargo build -q --release -p opsgate-load || exit 1
LOAD="$LT_ROOT/target/release/opsgate-load"
lt_init
if [ "$target" = ssh ]; then
  lt_start_sshd || exit 1
  export LOAD_SSH_PASSWORD="$LT_SSH_PASSWORD"
  ssh=(--ssh-port "$SSHD_PORT" --ssh-user "$LT_SSH_USER")
fi
case $mode in
  echo) m=(echo --channels 1 --interval-ms "$INTERVAL_MS" --duration "$DURATION") ;;
  bulk) m=(throughput --channels 1 --bytes "$LT_BULK_BYTES") ;;
  *) echo "mode: echo or bulk" >&2; exit 2 ;;
esac

reference() {
  local -a t
  if [ "$target" = ssh ]; then
    t=(--target ssh-cli "${ssh[@]}" --ssh-key "$LT_TMP/sshd/client_ed25519")
  elif [ "$mode" = echo ]; then
    t=(--target bare --command "$LT_ECHO_CMD")
  else
    t=(--target bare --command "$LT_BULK_CMD")
  fi
  timeout 300 "$LOAD" "${m[@]}" "${t[@]}" | grep -E '^\| (bare|ssh)' | sed 's/^|/| ref |/'
}

header=1

one() {
  local side=$1 bin=$2 env=$3
  # The side's settings (NAME=value words) are exported for lt_start_gateway, which
  # passes OPSGATE_* on to the gateway, and removed again after.
  local -a vars=()
  read -r -a vars <<<"$env"
  local v
  for v in "${vars[@]}"; do export "${v?}"; done
  lt_start_gateway "$bin" >/dev/null || exit 1
  for v in "${vars[@]}"; do unset "${v%%=*}"; done
  export OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD"
  local -a t=(--url "$GW_URL" --gateway-pid "$GW_PID" --password "$LT_ADMIN_PASSWORD")
  if [ "$target" = ssh ]; then
    t+=(--target opsgate-ssh "${ssh[@]}")
  elif [ "$mode" = echo ]; then
    t+=(--program echo)
  else
    t+=(--program bulk)
  fi
  local rows='^\| opsgate'
  [ "$header" = 1 ] && rows='^\| +target|^\| -+ \||^\| opsgate'
  header=0
  timeout 300 "$LOAD" "${m[@]}" "${t[@]}" | grep -E "$rows" |
    sed -E "s/^\| +target/| side | target/; s/^\| -+ \|/| --- | --- |/; s/^\| opsgate/| $side | opsgate/"
  lt_stop_gateway
}

for ((r = 1; r <= RUNS; r++)); do
  lt_log "round $r of $RUNS"
  one A "$bin_a" "${A_ENV:-}"
  one B "$bin_b" "${B_ENV:-}"
  [ "${REF:-0}" = 1 ] && reference
done
