#!/usr/bin/env bash
# Runs every test of pgferry: installs what the tests need when it is missing
# (scripts/setup.sh), then the whole workspace's tests against real PostgreSQL 15
# and 18 clusters that the tests start and stop themselves; every test binary
# runs even after one fails. Ends with one line
# that totals every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
total() { grep -E '^test result:' "$log" | sed -E "s/.* ([0-9]+) passed; ([0-9]+) failed.*/\\$1/" | awk '{s += $1} END {print s + 0}'; }
echo "tests: $(total 1) passed, $(total 2) failed"
exit "$status"
