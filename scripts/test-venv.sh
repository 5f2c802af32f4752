#!/usr/bin/env bash
# Makes target/test-venv: a Python venv with scripts/test-requirements.txt, which the tests that
# drive redcount with real Python clients use (they say so, and are skipped, when it is missing;
# in CI they fail instead). Re-run after changing the requirements; it is a no-op otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/test-venv
if [ -x "$venv/bin/python" ] && cmp -s scripts/test-requirements.txt "$venv/requirements.txt"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r scripts/test-requirements.txt
cp scripts/test-requirements.txt "$venv/requirements.txt"
echo "test venv ready: $venv"
