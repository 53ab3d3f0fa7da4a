#!/usr/bin/env bash
# Runs every opsgate test on a fresh machine of this kind (Debian, Rust toolchain, root):
# installs what the tests need (a real OpenSSH sshd, ssh-keygen, procps), then checks
# formatting and lints, runs the unit and integration tests (real binary, real sshd, real
# PTYs, real redb files, loopback only), a bounded fuzz run of the frame decoder, and a
# smoke run of every load-test scenario.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v pkill >/dev/null || need+=(procps)
command -v useradd >/dev/null || need+=(passwd)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
if [ -x load-tests/smoke.sh ]; then
  echo "== load-test smoke run"
  load-tests/smoke.sh
fi
echo "== all tests passed"
