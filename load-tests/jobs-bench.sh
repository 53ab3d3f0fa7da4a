#!/usr/bin/env bash
# Issue 12 benchmark: a `config_backup` of N targets (default 500) at concurrency C
# (default 32) through opsgate, side by side in the same run with (a) plain OpenSSH
# `ssh` at the same concurrency (xargs -P) sending the same commands on stdin, and
# (b) Netmiko (PyPI, installed into load-tests/.venv) with a ThreadPoolExecutor of C,
# device_type cisco_ios. All three fetch the running config from the same fake devices:
# N logins to one loopback sshd whose throwaway account `ogt-bench` has the fake device
# CLI (tests/fixtures/fake_device.py) as its login shell, with a ~20 KB IOS-like config.
#
#   load-tests/jobs-bench.sh                  # release build, N=500, C=32
#   N=50 C=8 load-tests/jobs-bench.sh         # smaller
#   SKIP_BUILD=1 ONLY=opsgate load-tests/jobs-bench.sh
#
# Figures: wall time, time per target, CPU seconds (the gateway's from /proc/PID/stat;
# the ssh loop's and Netmiko's from getrusage of the measured process tree), peak RSS
# (the gateway sampled every 50 ms; Netmiko's process; the largest ssh process). The
# sshd and fake devices cost the same for all three and are counted for none.
# Every run is bounded by `timeout` (LIMIT seconds, default 600). Must run as root (the
# sshd fixture and its throwaway user). Traffic stays on 127.0.0.1.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"

N=${N:-500}
C=${C:-32}
LIMIT=${LIMIT:-600}
ONLY=${ONLY:-opsgate,ssh,netmiko}
SECRET="en-secret-1" # the fake device's enable secret
PY="$LT_DIR/.venv/bin/python"
DRIVER="$LT_DIR/jobs_bench.py"

if [ -z "${SKIP_BUILD:-}" ]; then
  lt_log "building opsgate (release)"
  cargo build -q --release -p opsgate || exit 1
fi
GW_BIN="$LT_ROOT/target/release/opsgate"
if ! "$PY" -c 'import netmiko, websockets' 2>/dev/null; then
  lt_log "installing netmiko and websockets into load-tests/.venv"
  python3 -m venv "$LT_DIR/.venv" &&
    timeout 600 "$LT_DIR/.venv/bin/pip" install -q netmiko websockets || exit 1
fi

lt_init
stamp=$(date +%Y%m%d-%H%M%S)
OUT="$LT_DIR/out/jobs-$stamp"
mkdir -p "$OUT"

# The device account and its sshd (lib.sh's fixture, another user and login shell).
install -D -m 755 "$LT_ROOT/tests/fixtures/fake_device.py" /usr/local/lib/opsgate-bench/fake_device.py
chmod 755 /usr/local/lib/opsgate-bench
LT_SSH_USER=ogt-bench
LT_SSH_PASSWORD=ogt-bench-pw-1
lt_start_sshd || { lt_log "sshd fixture needed (root, openssh-server)"; exit 1; }
usermod -s /usr/local/lib/opsgate-bench/fake_device.py "$LT_SSH_USER" || exit 1
FIX="/tmp/opsgate-fake/$SSHD_PORT"
mkdir -p "$FIX" && chmod 1777 /tmp/opsgate-fake && chmod 777 "$FIX"
python3 - "$FIX/config.txt" <<'EOF'
import sys
lines = ["hostname rtr1", "!", "service timestamps debug datetime msec", "!"]
for i in range(1, 49):
    lines += [f"interface GigabitEthernet1/0/{i}", f" description access port {i} to room {100 + i}",
              " switchport mode access", f" switchport access vlan {100 + i % 8}",
              " spanning-tree portfast", "!"]
for v in range(100, 108):
    lines += [f"vlan {v}", f" name users-{v}", "!"]
lines += ["ip access-list extended MGMT"] + [f" permit tcp 10.{i}.0.0 0.0.255.255 any eq 22" for i in range(60)]
lines += ["!", "router ospf 1", " network 10.0.0.0 0.255.255.255 area 0", "!",
          "line vty 0 4", " transport input ssh", "!"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
EOF
chmod 644 "$FIX/config.txt"
: >"$FIX/logins.log" && chmod 666 "$FIX/logins.log"
# BANNER=test keeps the fixture's tricky banner (a line ending in ">", which Netmiko can
# take for the prompt under load); by default a plain one, as most devices have.
if [ "${BANNER:-plain}" = plain ]; then
  printf '\n*** Authorized access only ***\n\n' >"$FIX/banner" && chmod 644 "$FIX/banner"
fi
logins() { wc -l <"$FIX/logins.log"; }

{
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
  grep -m1 'model name' /proc/cpuinfo
  echo "opsgate $(git rev-parse --short HEAD); N=$N C=$C; $("$PY" -c 'import netmiko; print("netmiko", netmiko.__version__)'); $(ssh -V 2>&1)"
  echo "config: $(wc -c <"$FIX/config.txt") bytes, $(wc -l <"$FIX/config.txt") lines; banner: ${BANNER:-plain}"
} | tee "$OUT/machine.txt"

results="$OUT/results.jsonl"
want() { [[ ",$ONLY," == *",$1,"* ]]; }

if want opsgate; then
  lt_log "== opsgate: config_backup of $N targets at concurrency $C"
  OPSGATE_JOBS__MAX_CONCURRENCY=$((C > 64 ? C : 64)) OPSGATE_JOBS__MAX_CONCURRENCY_PER_JOB=$((C > 64 ? C : 64)) \
    lt_start_gateway "$GW_BIN" || exit 1
  before=$(logins)
  timeout "$LIMIT" "$PY" "$DRIVER" gateway --url "$GW_URL" --password "$LT_ADMIN_PASSWORD" \
    --gateway-pid "$GW_PID" --port "$SSHD_PORT" --user "$LT_SSH_USER" --key "$SSH_KEY" \
    --secret "$SECRET" --n "$N" --c "$C" --timeout "$LIMIT" | tee -a "$results"
  lt_log "opsgate: $(($(logins) - before)) logins on the devices (1 of them trusts the host key)"
  lt_stop_gateway
fi

# OpenSSH 9.2 picks the post-quantum sntrup761x25519 key exchange by default, which
# costs each client ~60 ms of CPU (and sshd as much); russh and paramiko do not offer
# it and agree on curve25519. Both rows are measured: `ssh` as a user runs it, and
# `ssh-curve25519-sha256` with the key exchange the other two use.
if want ssh; then
  printf 'enable\n%s\nterminal length 0\nshow running-config\nexit\n' "$SECRET" >"$LT_TMP/commands.txt"
  # The host key trusted once, as the gateway's job trusts it once.
  echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$LT_TMP/sshd/host_ed25519.pub")" >"$LT_TMP/known_hosts"
  export SSH_KEY SSHD_PORT LT_TMP LT_SSH_USER SSH_KEX_OPT
  for kex in default curve25519-sha256; do
    label=ssh SSH_KEX_OPT="KexAlgorithms=+curve25519-sha256"
    if [ "$kex" != default ]; then label="ssh-$kex" SSH_KEX_OPT="KexAlgorithms=$kex"; fi
    lt_log "== $label: $N x OpenSSH at xargs -P $C"
    rm -rf "$LT_TMP/ssh-out" && mkdir -p "$LT_TMP/ssh-out"
    before=$(logins)
    timeout "$LIMIT" "$PY" "$DRIVER" measure --label "$label" -- bash -c \
      'seq 1 '"$N"' | xargs -P '"$C"' -I{} sh -c '\''exec ssh -T -i "$SSH_KEY" -p "$SSHD_PORT" -o BatchMode=yes -o "$SSH_KEX_OPT" -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$LT_TMP/known_hosts" -o LogLevel=ERROR "$LT_SSH_USER@127.0.0.1" <"$LT_TMP/commands.txt" >"$LT_TMP/ssh-out/{}.txt"'\''' \
      | tee -a "$results"
    ok=$(grep -l '^hostname rtr1' "$LT_TMP"/ssh-out/*.txt 2>/dev/null | xargs -r grep -l '^end' | wc -l)
    lt_log "$label: $ok of $N outputs hold the whole config; $(($(logins) - before)) logins"
    echo "{\"label\":\"$label-check\",\"complete\":$ok}" >>"$results"
  done
fi

if want netmiko; then
  lt_log "== netmiko: $N x ConnectHandler(cisco_ios) in ThreadPoolExecutor($C)"
  before=$(logins)
  timeout "$LIMIT" "$PY" "$DRIVER" measure --label netmiko-process -- \
    "$PY" "$DRIVER" netmiko --port "$SSHD_PORT" --user "$LT_SSH_USER" --key "$SSH_KEY" \
    --secret "$SECRET" --n "$N" --c "$C" --timeout "$LIMIT" --out "$LT_TMP/netmiko-out" \
    | tee -a "$results"
  lt_log "netmiko: $(($(logins) - before)) logins"
fi

lt_log "figures in $results"
