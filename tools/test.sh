#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the pinned tools (anvil, solc) from
# tools/package-lock.json, then every unit, property and integration test of the workspace, then
# checks and unit-tests the Prometheus alerting rules (promtool, fetched by tools/promtool.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix tools --no-audit --no-fund
cargo test --workspace --locked "$@"
tools/promtool.sh check rules deploy/prometheus/alerts.yml
tools/promtool.sh test rules deploy/prometheus/alerts_test.yml
