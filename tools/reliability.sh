#!/usr/bin/env bash
# The reliability suite: runs the release binary against real anvil nodes and prints a markdown
# table (one row per figure or mode); exits non-zero if any row failed.
#   - a crash storm: kill -9 across catch-up, following and L1 reorgs (depth 1-5), `db check`
#     after every kill, then a hash-by-hash comparison of the database with the nodes' chains;
#   - hostile L1 node modes (hang, cut, garbage, truncated, lying safe/finalized heads, a
#     finalized head of 2^63-1, null for latest, 200 MB answers): survival, peak RSS per mode,
#     recovery, `db check`;
#   - a fuzz of the JSON-RPC server (malformed requests from concurrent clients) with the
#     supervisor_syncStatus latency (p50/p99) measured meanwhile.
#
# Long version (>= 60 kills, every mode, 40 000 fuzz requests; ~10-15 minutes):
#   tools/reliability.sh
# Short version, for CI (10 kills, 3 modes, 2 000 fuzz requests; about a minute or two):
#   tools/reliability.sh --short
# Other options: --kills N, --fuzz N (requests), --seed S (every random choice derives from it),
# --only storm|hostile|fuzz (one part). A wait that times out saves the supervisor's threads
# (gdb, if installed), counters and log to a file that the failing row names.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix tools --no-audit --no-fund --silent >/dev/null
cargo bench --locked --bench reliability -- "$@"
