# Shared shell pieces for smoke.sh, run.sh and compare.sh: start the gateway and an sshd
# fixture on loopback, and stop everything started, whatever happens (trap).
# Source it; it defines functions and the LT_* variables, and runs nothing by itself.

LT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LT_ROOT="$(cd "$LT_DIR/.." && pwd)"
LT_PIDS=()
LT_TMP=""

# Output of the bulk programs: 64 MiB of base64 from 48 MiB of random bytes, no newline.
LT_BULK_BYTES=$((64 * 1024 * 1024))
LT_BULK_CMD="head -c $((LT_BULK_BYTES / 4 * 3)) /dev/urandom | base64 -w 0"
LT_ECHO_CMD="stty raw -echo; printf READY; exec cat"
LT_ADMIN_PASSWORD="load-test-admin-pw-1"
LT_SSH_USER="opsgate-test"
LT_SSH_PASSWORD="opsgate-test-pw-1"

lt_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

lt_cleanup() {
  local pid
  for pid in "${LT_PIDS[@]}"; do
    # Each server was started in its own process group (setsid): end the group, so
    # forked children (sshd sessions, PTY programs, wetty's shells) go with it.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${LT_PIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  LT_PIDS=()
  if [ -n "$LT_TMP" ] && [ -d "$LT_TMP" ] && [ -z "${LT_KEEP_TMP:-}" ]; then
    rm -rf "$LT_TMP"
  fi
}

# Error chains without backtraces in the reports.
export RUST_LIB_BACKTRACE=0 RUST_BACKTRACE=0

lt_init() {
  LT_TMP="$(mktemp -d /tmp/opsgate-load.XXXXXX)"
  trap 'lt_cleanup' EXIT
  trap 'lt_cleanup; exit 130' INT TERM
  # 10,000 sockets need more descriptors than the usual 1,024, in the gateway too.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

lt_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# lt_wait_port PORT SECONDS
lt_wait_port() {
  local port=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 20; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# lt_spawn LOGFILE CMD... : starts CMD in its own session; sets LT_LAST_PID.
lt_spawn() {
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  LT_LAST_PID=$!
  LT_PIDS+=("$LT_LAST_PID")
}

# lt_start_gateway BIN : starts opsgate with a temp data dir; sets GW_PID GW_PORT GW_URL.
# Extra OPSGATE_* variables in the environment are passed on (config overrides).
lt_start_gateway() {
  local bin=$1 dir="$LT_TMP/gateway"
  mkdir -p "$dir/data"
  GW_PORT=$(lt_free_port)
  GW_URL="http://127.0.0.1:$GW_PORT"
  cat >"$dir/config.toml" <<EOF
[login_limit]
per_ip = 1000000
per_username = 1000000
in_flight_per_ip = 1000000
in_flight_per_username = 1000000

# Every load client comes from 127.0.0.1 as one user: lift the per-address and per-user
# limits (the total connection cap still follows the fd limit).
[http]
max_connections = 1000000
max_connections_per_ip = 1000000

[rate_limit]
per_user_per_minute = 0
per_ip_per_minute = 0

[mux]
max_sockets_per_login = 100000
max_channels_per_login = 100000
max_channels_per_user = 100000
max_channels_total = 4000
opens_per_minute = 0
# Channels a failed step leaves behind end after a minute, not five: each holds a PTY,
# and the kernel has 4,096 (kernel.pty.max). The reconnect storm needs seconds.
grace_secs = 60

# Figures per connection are differences of RSS: a release of code pages (every 10 s
# by default) between two readings would subtract start-up code from them. The gateway
# keeps its code pages here and trims its heap once a minute, as in earlier rounds;
# idle-rss.sh measures as shipped (OPSGATE_MEMORY__* in the environment override this).
[memory]
release_code_pages = false
release_secs = 60

[pty.programs]
echo = ["sh", "-c", "$LT_ECHO_CMD"]
bulk = ["sh", "-c", "$LT_BULK_CMD"]
bulk_small = ["sh", "-c", "head -c 786432 /dev/urandom | base64 -w 0"]
EOF
  OPSGATE_ADMIN_PASSWORD="$LT_ADMIN_PASSWORD" OPSGATE_LOG="${OPSGATE_LOG:-warn}" \
    lt_spawn "$dir/gateway.log" "$bin" serve --listen "127.0.0.1:$GW_PORT" \
    --data-dir "$dir/data" --config "$dir/config.toml"
  GW_PID=$LT_LAST_PID
  if ! lt_wait_port "$GW_PORT" 30; then
    lt_log "gateway did not start:"; cat "$dir/gateway.log" >&2; return 1
  fi
  lt_log "gateway pid $GW_PID on $GW_URL"
}

# lt_stop_gateway : stops the gateway started last (and its PTY programs).
lt_stop_gateway() {
  [ -n "${GW_PID:-}" ] || return 0
  kill -TERM -- "-$GW_PID" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL -- "-$GW_PID" 2>/dev/null || true
  local keep=() p
  for p in "${LT_PIDS[@]}"; do [ "$p" = "$GW_PID" ] || keep+=("$p"); done
  LT_PIDS=("${keep[@]}")
  rm -rf "$LT_TMP/gateway"
  GW_PID=""
}

# lt_ensure_sshd : makes sure openssh-server and the throwaway user exist.
lt_ensure_sshd() {
  if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      lt_log "installing openssh-server"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null 2>&1; } ||
        return 1
    else
      return 1
    fi
  fi
  [ "$(id -u)" = 0 ] || return 1
  id "$LT_SSH_USER" >/dev/null 2>&1 || useradd -m -s /bin/sh "$LT_SSH_USER" 2>/dev/null ||
    id "$LT_SSH_USER" >/dev/null 2>&1 || return 1
  echo "$LT_SSH_USER:$LT_SSH_PASSWORD" | chpasswd || return 1
  mkdir -p /run/sshd
}

# lt_start_sshd : a real sshd on its own port with its own host key and a client key
# (no passphrase, for `ssh -tt`); sets SSHD_PID SSHD_PORT SSH_KEY.
lt_start_sshd() {
  lt_ensure_sshd || return 1
  local dir="$LT_TMP/sshd"
  mkdir -p "$dir"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/client_ed25519"
  cp "$dir/client_ed25519.pub" "$dir/authorized_keys"
  # sshd reads authorized_keys as the user: the path must be readable by it.
  chmod 755 "$LT_TMP" "$dir"
  chmod 644 "$dir/authorized_keys"
  SSH_KEY="$dir/client_ed25519"
  SSHD_PORT=$(lt_free_port)
  cat >"$dir/sshd_config" <<EOF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication yes
KbdInteractiveAuthentication yes
UsePAM yes
StrictModes no
PermitRootLogin no
AllowUsers $LT_SSH_USER
LogLevel ERROR
MaxStartups 1000
MaxSessions 1000
PrintMotd no
PrintLastLog no
EOF
  lt_spawn "$dir/sshd.log" /usr/sbin/sshd -D -e -f "$dir/sshd_config"
  SSHD_PID=$LT_LAST_PID
  if ! lt_wait_port "$SSHD_PORT" 10; then
    lt_log "sshd did not start:"; cat "$dir/sshd.log" >&2; return 1
  fi
  lt_log "sshd pid $SSHD_PID on 127.0.0.1:$SSHD_PORT"
}
