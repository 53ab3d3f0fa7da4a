#!/usr/bin/env bash
# Side by side, in the same run, with the same payloads: opsgate against wetty (npm),
# webssh (PyPI), ttyd (only if `ttyd` is on PATH), and the physical references — a bare
# PTY read directly, and the OpenSSH client (`ssh -tt`) to the same sshd.
#
#   load-tests/compare.sh              # 3 rounds, targets interleaved in each round
#   ROUNDS=1 load-tests/compare.sh
#
# Peers are installed from their registries into load-tests/.peers/ (gitignored) on first
# use: wetty with npm (node-pty is compiled with the system's Node headers), webssh with
# pip into a venv. Everything runs on 127.0.0.1 and is stopped on exit.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LT_ROOT"

ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-200}
WETTY_VERSION=3.2.0
WEBSSH_VERSION=1.6.3
PEERS="$LT_DIR/.peers"

install_wetty() {
  local dir="$PEERS/wetty"
  if [ ! -f "$dir/node_modules/wetty/build/main.js" ]; then
    lt_log "installing wetty $WETTY_VERSION from the npm registry"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund "wetty@$WETTY_VERSION" >"$PEERS/npm.log" 2>&1 || return 1
  fi
  local pty="$dir/node_modules/node-pty"
  if [ ! -f "$pty/build/Release/pty.node" ]; then
    # npm 11 does not run node-pty's install script unless allowed, and it has no
    # prebuilt binary for Linux: compile it against the installed Node's headers.
    lt_log "building node-pty"
    local gyp
    gyp="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")/node_modules/node-gyp/bin/node-gyp.js"
    (cd "$pty" && node "$gyp" rebuild --nodedir=/usr) >"$PEERS/node-gyp.log" 2>&1 || return 1
  fi
  WETTY_MAIN="$dir/node_modules/wetty/build/main.js"
}

install_webssh() {
  local venv="$PEERS/webssh-venv"
  if [ ! -x "$venv/bin/wssh" ]; then
    lt_log "installing webssh $WEBSSH_VERSION from PyPI"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "webssh==$WEBSSH_VERSION" >"$PEERS/pip.log" 2>&1 || return 1
  fi
  WSSH="$venv/bin/wssh"
}

lt_log "building release binaries"
cargo build -q --release -p opsgate -p opsgate-load || exit 1
LOAD="$LT_ROOT/target/release/opsgate-load"
mkdir -p "$PEERS"
have_wetty=1; install_wetty || { have_wetty=0; lt_log "wetty unavailable (see $PEERS/*.log)"; }
have_webssh=1; install_webssh || { have_webssh=0; lt_log "webssh unavailable (see $PEERS/pip.log)"; }
have_ttyd=0; command -v ttyd >/dev/null && have_ttyd=1

stamp=$(date +%Y%m%d-%H%M%S)
OUT="$LT_DIR/out/compare-$stamp"
mkdir -p "$OUT"
json="$OUT/compare.jsonl"

lt_init
lt_start_gateway "$LT_ROOT/target/release/opsgate" || exit 1
lt_start_sshd || { lt_log "sshd fixture needed (root, openssh-server)"; exit 1; }
export OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD" LOAD_SSH_PASSWORD="$LT_SSH_PASSWORD"

# One peer server per program (they run a fixed command per instance).
start_wetty() { # NAME COMMAND -> sets PORT_<NAME> PID_<NAME>
  local name=$1 cmd=$2 port
  port=$(lt_free_port)
  NODE_ENV=production lt_spawn "$OUT/wetty-$name.log" node "$WETTY_MAIN" \
    --host 127.0.0.1 --port "$port" --base /wetty --command "sh -c '$cmd'"
  printf -v "PID_$name" %s "$LT_LAST_PID"
  printf -v "PORT_$name" %s "$port"
  lt_wait_port "$port" 30 || { lt_log "wetty did not start"; return 1; }
}
start_ttyd() {
  local name=$1 cmd=$2 port
  port=$(lt_free_port)
  lt_spawn "$OUT/ttyd-$name.log" ttyd -i 127.0.0.1 -p "$port" -W sh -c "$cmd"
  printf -v "PID_$name" %s "$LT_LAST_PID"
  printf -v "PORT_$name" %s "$port"
  lt_wait_port "$port" 10 || { lt_log "ttyd did not start"; return 1; }
}
if [ "$have_wetty" = 1 ]; then
  start_wetty wetty_echo "$LT_ECHO_CMD" && start_wetty wetty_bulk "$LT_BULK_CMD" || have_wetty=0
fi
if [ "$have_ttyd" = 1 ]; then
  start_ttyd ttyd_echo "$LT_ECHO_CMD" && start_ttyd ttyd_bulk "$LT_BULK_CMD" || have_ttyd=0
fi
if [ "$have_webssh" = 1 ]; then
  WEBSSH_PORT=$(lt_free_port)
  lt_spawn "$OUT/webssh.log" "$WSSH" --address=127.0.0.1 --port="$WEBSSH_PORT" --xsrf=False \
    --policy=autoadd --maxconn=100000 --encoding=utf-8 --logging=warning
  WEBSSH_PID=$LT_LAST_PID
  lt_wait_port "$WEBSSH_PORT" 30 || have_webssh=0
fi

{
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
  grep -m1 'model name' /proc/cpuinfo
  echo "opsgate $(git -C "$LT_ROOT" rev-parse --short HEAD); wetty $WETTY_VERSION ($have_wetty); webssh $WEBSSH_VERSION ($have_webssh); ttyd ($have_ttyd) $(ttyd --version 2>/dev/null)"
  echo "node $(node --version); python $(python3 --version 2>&1); $(ssh -V 2>&1)"
} | tee "$OUT/machine.txt"

failures=()
step() {
  local name=$1
  shift
  lt_log "== $name"
  { echo "\$ opsgate-load $*"; timeout 600 "$LOAD" "$@" --json "$json"; } 2>&1 | tee -a "$OUT/compare.log"
  [ "${PIPESTATUS[0]}" = 0 ] || failures+=("$name")
}

og=(--url "$GW_URL" --gateway-pid "$GW_PID")
ssh=(--ssh-port "$SSHD_PORT" --ssh-user "$LT_SSH_USER")
for ((r = 1; r <= ROUNDS; r++)); do
  lt_log "round $r of $ROUNDS"
  # Keystroke echo, one terminal, a keystroke every 20 ms for 20 s (1,000 samples a run).
  e=(echo --channels 1 --interval-ms 20 --duration 20)
  step bare-echo "${e[@]}" --target bare --command "$LT_ECHO_CMD"
  step opsgate-echo "${e[@]}" "${og[@]}" --program echo
  [ "$have_wetty" = 1 ] && step wetty-echo "${e[@]}" --target wetty --url "http://127.0.0.1:$PORT_wetty_echo/wetty" --server-pid "$PID_wetty_echo"
  [ "$have_ttyd" = 1 ] && step ttyd-echo "${e[@]}" --target ttyd --url "http://127.0.0.1:$PORT_ttyd_echo" --server-pid "$PID_ttyd_echo"
  step sshtt-echo "${e[@]}" --target ssh-cli "${ssh[@]}" --ssh-key "$SSH_KEY"
  step opsgate-ssh-echo "${e[@]}" "${og[@]}" --target opsgate-ssh "${ssh[@]}"
  [ "$have_webssh" = 1 ] && step webssh-echo "${e[@]}" --target webssh --url "http://127.0.0.1:$WEBSSH_PORT" "${ssh[@]}" --server-pid "$WEBSSH_PID"

  # 64 MiB through one terminal.
  t=(throughput --channels 1 --bytes "$LT_BULK_BYTES")
  step bare-bulk "${t[@]}" --target bare --command "$LT_BULK_CMD"
  step opsgate-bulk "${t[@]}" "${og[@]}" --program bulk
  [ "$have_wetty" = 1 ] && step wetty-bulk "${t[@]}" --target wetty --url "http://127.0.0.1:$PORT_wetty_bulk/wetty" --server-pid "$PID_wetty_bulk"
  [ "$have_ttyd" = 1 ] && step ttyd-bulk "${t[@]}" --target ttyd --url "http://127.0.0.1:$PORT_ttyd_bulk" --server-pid "$PID_ttyd_bulk"
  step sshtt-bulk "${t[@]}" --target ssh-cli "${ssh[@]}" --ssh-key "$SSH_KEY"
  step opsgate-ssh-bulk "${t[@]}" "${og[@]}" --target opsgate-ssh "${ssh[@]}"
  [ "$have_webssh" = 1 ] && step webssh-bulk "${t[@]}" --target webssh --url "http://127.0.0.1:$WEBSSH_PORT" "${ssh[@]}" --server-pid "$WEBSSH_PID"
done

# Memory per idle connection with one terminal, once.
i=(idle --sessions "$IDLE" --settle 3)
step opsgate-idle "${i[@]}" "${og[@]}" --program echo
[ "$have_wetty" = 1 ] && step wetty-idle "${i[@]}" --target wetty --url "http://127.0.0.1:$PORT_wetty_echo/wetty" --server-pid "$PID_wetty_echo"
[ "$have_ttyd" = 1 ] && step ttyd-idle "${i[@]}" --target ttyd --url "http://127.0.0.1:$PORT_ttyd_echo" --server-pid "$PID_ttyd_echo"
step opsgate-ssh-idle "${i[@]}" "${og[@]}" --target opsgate-ssh "${ssh[@]}"
[ "$have_webssh" = 1 ] && step webssh-idle "${i[@]}" --target webssh --url "http://127.0.0.1:$WEBSSH_PORT" "${ssh[@]}" --server-pid "$WEBSSH_PID"

python3 "$LT_DIR/report.py" "$json" | tee "$OUT/compare.md"
lt_log "tables in $OUT/compare.md"
if [ "${#failures[@]}" -gt 0 ]; then
  lt_log "failed: ${failures[*]}"
  exit 1
fi
