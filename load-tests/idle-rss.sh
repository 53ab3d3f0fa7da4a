#!/usr/bin/env bash
# Gateway memory with no terminal open: VmRSS, RssAnon and RssFile at start, after 1 and
# 5 logins, after a short echo run through one `pty` terminal (closed again), and after
# the next release of unused memory (every 10 s); each binary twice, with `[memory]
# release_code_pages` off and on (the default).
#   load-tests/idle-rss.sh                         # the binary `cargo run --release` builds
#   load-tests/idle-rss.sh /tmp/a/opsgate /tmp/b/opsgate   # A/B of two builds, in turn
# Loopback only; each gateway is stopped before the next starts.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"
if [ $# -eq 0 ]; then
  # Built alone, as users build it: with opsgate-load in the same build, features unify
  # and the binary grows by about 3 MB.
  cargo build -q --release -p opsgate || exit 1
  set -- "$LT_ROOT/target/release/opsgate"
fi
cargo build -q --release -p opsgate-load || exit 1
LOAD="$LT_ROOT/target/release/opsgate-load"
lt_init

mem() {
  awk -v bin="$1" -v when="$2" '/^(VmRSS|RssAnon|RssFile):/ { v[$1] = $2 }
    END { printf "| %s | %s | %.1f | %.1f | %.1f |\n", bin, when,
      v["VmRSS:"] / 1024, v["RssAnon:"] / 1024, v["RssFile:"] / 1024 }' "/proc/$GW_PID/status"
}
login() {
  curl -s -o /dev/null -H 'X-Requested-With: opsgate' -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$LT_ADMIN_PASSWORD\"}" "$GW_URL/api/auth/login"
}

echo "| binary, code pages released | when | VmRSS MB | RssAnon MB | RssFile MB |"
echo "| --- | --- | ---: | ---: | ---: |"
for bin in "$@"; do
 for release in false true; do
  name="$(basename "$(dirname "$bin")")/$(basename "$bin") ($(($(stat -c %s "$bin") / 1000000)) MB), $release"
  OPSGATE_MEMORY__RELEASE_CODE_PAGES=$release OPSGATE_MEMORY__RELEASE_SECS=10 \
    lt_start_gateway "$bin" || exit 1
  started=$SECONDS
  sleep 2
  mem "$name" "started"
  login
  sleep 1
  mem "$name" "after 1 login"
  for _ in 1 2 3 4; do login; done
  sleep 1
  mem "$name" "after 5 logins"
  OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD" timeout 120 "$LOAD" echo --url "$GW_URL" \
    --password "$LT_ADMIN_PASSWORD" --server-pid "$GW_PID" --program echo --channels 1 \
    >/dev/null 2>&1
  sleep 2
  mem "$name" "after a terminal"
  # The release runs every `[memory] release_secs` (10 s) from start-up, and unmaps code
  # only after a quiet period: the one the terminal ended in may not be. Measured 2 s
  # after the second release from here, which follows a whole quiet period.
  sleep $((22 - (SECONDS - started) % 10))
  mem "$name" "2 s after a quiet period's release"
  lt_stop_gateway
 done
done
