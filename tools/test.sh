#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the pinned tools (anvil, solc) from
# tools/package-lock.json, then every unit, property and integration test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix tools --no-audit --no-fund
cargo test --workspace --locked "$@"
