#!/usr/bin/env bash
# `pgferry demo` on a fresh machine: installs what is missing (scripts/setup.sh),
# builds pgferry, then runs the demo (two throwaway local clusters, a sample of
# about 100 MB under live writes, migrated end to end; see README.md). Arguments
# are passed on, e.g. --size-mb 20.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec cargo run --release --locked -q -p pgferry-cli -- demo "$@"
