#!/usr/bin/env bash
# Runs every opsgate test on a fresh machine of this kind (Debian, Rust toolchain, root):
# installs what the tests need (a real OpenSSH sshd, ssh-keygen, procps, the network
# tools: iputils-ping, traceroute, mtr-tiny, dnsutils, whois, nmap, dnsmasq, and Debian's
# Chromium), then checks formatting and lints, runs the unit and integration tests (real
# binary, real sshd, real PTYs, real redb files, loopback only), a bounded fuzz run of the
# frame decoder, a smoke run of every load-test scenario, and the browser client's tests:
# its protocol and flow-control unit tests, then an end-to-end run in Chromium against
# the real binary and a real sshd. Node.js (>= 20.19) and npm must be present: the build
# itself needs them (build.rs builds web/).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v pkill >/dev/null || need+=(procps)
command -v useradd >/dev/null || need+=(passwd)
# The e2e suite drives Debian's Chromium through playwright-core; no browser download.
[ -x /usr/bin/chromium ] || need+=(chromium)
# Tool tests run the real programs (each test skips a tool that is missing).
command -v ping >/dev/null || need+=(iputils-ping)
[ -e /usr/sbin/traceroute ] || command -v traceroute >/dev/null || need+=(traceroute)
command -v mtr >/dev/null || need+=(mtr-tiny)
command -v dig >/dev/null || need+=(dnsutils)
command -v whois >/dev/null || need+=(whois)
command -v nmap >/dev/null || need+=(nmap)
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# CI builds every crate once from a clean clone: incremental state there only takes disk
# (about half of target/, 3 GB of a 6 GB build), and one CI run failed with "No space
# left on device" while compiling.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
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
echo "== web client: unit tests (protocol vectors, flow control)"
command -v npm >/dev/null || { echo "test.sh: npm (Node.js >= 20.19) is needed for the web client" >&2; exit 1; }
if [ ! web/node_modules/.package-lock.json -nt web/package-lock.json ]; then
  # npm 11 may refuse a lock file it wrote itself when an optional platform binary is
  # not served by the registry (npm/cli#9846); `npm install` uses the same lock file.
  (cd web && { npm ci --no-audit --no-fund || npm install --no-audit --no-fund; })
fi
(cd web && npm run --silent test:unit)
echo "== web client: end to end in Chromium (real gateway, real sshd)"
cargo build -p opsgate
(cd web && npm run --silent test:e2e)
echo "== all tests passed"
