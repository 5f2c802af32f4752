#!/usr/bin/env bash
# Quick start: installs what redcount needs (redis-server; Rust must already be there), builds it, and
# counts the words of the sample corpus (U.S. State of the Union addresses) with one worker per CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (Debian package)..." >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo (Rust 1.88 or newer) is needed: install it with rustup, https://rustup.rs" >&2
  exit 1
fi
exec cargo run --release --quiet --bin redcount -- run corpus/sotu "$@"
