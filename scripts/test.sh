#!/usr/bin/env bash
# Runs every test of pgferry: installs what the tests need when it is missing
# (scripts/setup.sh), then the whole workspace's tests against real PostgreSQL 15
# and 18 clusters that the tests start and stop themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --workspace --locked "$@"
