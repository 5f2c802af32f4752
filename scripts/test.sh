#!/usr/bin/env bash
# The tests: installs what they need when missing (scripts/deps.sh --tests, and --browser when
# given: the dashboard test drives Chromium), runs every test of the workspace against Debian's
# redis-server, then the end-to-end, fault, stream and resume tests again against Valkey. Tests
# start their own servers on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --tests "$@"
redis-server --version
cargo test --workspace --locked
valkey_bin="$PWD/target/valkey/bin"
echo "== again on $("$valkey_bin/redis-server" --version)"
# One test at a time: the fault tests check that no call held the server over 10 ms by its slow
# log, which counts wall time; two fault tests at once on two cores (each with its server, driver
# and workers) can have a 1 ms call descheduled past that (seen once on Valkey: a 0.2 ms claim
# logged at 10.6 ms).
PATH="$valkey_bin:$PATH" REDCOUNT_TEST_SERVER=Valkey \
  cargo test --locked -p redcount --test e2e --test faults --test stream --test resume -- --test-threads=1
