#!/usr/bin/env bash
# Quick start: installs what `redcount run` needs (redis-server, scripts/deps.sh; Rust must already
# be there), builds it, and counts the words of the sample corpus (U.S. State of the Union
# addresses) with one worker per CPU. The tests' own needs are installed by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
exec cargo run --release --quiet --bin redcount -- run corpus/sotu "$@"
