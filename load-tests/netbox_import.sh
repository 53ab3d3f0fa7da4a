#!/usr/bin/env bash
# NetBox import benchmark: the gateway imports every device of the NetBox-shaped fixture
# (tests/fixtures/netbox_fixture.py, the same server the tests use; 2,500 devices over
# 20 sites by default) as one `netbox_import` job, then imports them again (all
# updates). Prints the wall time of each job (POST to finished, as a client sees it)
# and the gateway's RSS before and its peak (VmHWM) after.
#
#   load-tests/netbox_import.sh                     # release build
#   LOAD_PROFILE=debug NB_DEVICES=200 load-tests/netbox_import.sh   # tiny (smoke.sh)
#
# Bounded: each job is waited for at most 120 s; everything started is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"

profile="${LOAD_PROFILE:-release}"
devices="${NB_DEVICES:-2500}"
sites="${NB_SITES:-20}"
flag=()
[ "$profile" = release ] && flag=(--release)
lt_log "building opsgate ($profile)"
cargo build -q "${flag[@]}" -p opsgate
lt_init
lt_start_gateway "$LT_ROOT/target/$profile/opsgate"

nb_port=$(lt_free_port)
lt_spawn "$LT_TMP/netbox.log" python3 "$LT_ROOT/tests/fixtures/netbox_fixture.py" \
  --port "$nb_port" --devices "$devices" --sites "$sites"
lt_wait_port "$nb_port" 20 || { cat "$LT_TMP/netbox.log" >&2; exit 1; }

jar="$LT_TMP/cookies"
api() { # api METHOD PATH [JSON]
  curl -sS --fail-with-body -b "$jar" -c "$jar" -X "$1" -H 'X-Requested-With: opsgate-load' \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$GW_URL$2"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

api POST /api/auth/login "{\"username\":\"admin\",\"password\":\"$LT_ADMIN_PASSWORD\"}" >/dev/null
api PUT /api/netbox "{\"url\":\"http://127.0.0.1:$nb_port\",\"token\":\"0123456789abcdef0123456789abcdef01234567\"}" >/dev/null

rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$GW_PID/status"; }
rss_before=$(rss VmRSS)

run_import() { # prints "seconds created updated refused"
  local t0 id state job
  t0=$(date +%s.%N)
  id=$(api POST /api/netbox/import '{"filters":{},"folder_by":"site"}' | field "['id']")
  for _ in $(seq 1 1200); do
    job=$(api GET "/api/jobs/$id")
    state=$(echo "$job" | field "['state']")
    case "$state" in succeeded | failed | cancelled) break ;; esac
    sleep 0.1
  done
  local t1
  t1=$(date +%s.%N)
  [ "$state" = succeeded ] || { lt_log "import $state: $job"; exit 1; }
  echo "$job" | python3 -c "
import json,sys
j=json.load(sys.stdin); s=json.loads(j['targets'][0]['output'][0]['output'])
print('%.2f %d %d %d %d' % ($t1-$t0, s['created'], s['updated'], len(s['refused']), s['duration_ms']))"
}

# Assignments, not `read < <(…)`: a failed import then stops the script (set -e).
first=$(run_import)
second=$(run_import)
read -r t1 c1 u1 r1 d1 <<<"$first"
read -r t2 c2 u2 r2 d2 <<<"$second"
rss_peak=$(rss VmHWM)
rss_after=$(rss VmRSS)
sessions=$(api GET /api/sessions | python3 -c "import json,sys; print(sum(len(f['sessions']) for f in json.load(sys.stdin)['folders']))")

cat <<EOF
netbox_import ($profile build, $devices devices over $sites sites, $(nproc) cores)
  first import : ${t1} s wall (job ${d1} ms): created $c1, updated $u1, refused $r1
  re-import    : ${t2} s wall (job ${d2} ms): created $c2, updated $u2, refused $r2
  sessions     : $sessions
  gateway RSS  : ${rss_before} KiB before, ${rss_after} KiB after, peak (VmHWM) ${rss_peak} KiB
EOF
