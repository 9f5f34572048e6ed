#!/usr/bin/env bash
# Build contracts/out/SequencerUptimeFeed.json with the pinned solc (tools/node_modules/solc).
#
#   contracts/build.sh           compile and (re)write the artifact
#   contracts/build.sh --check   compile to a temp file; exit 1 if it differs from the artifact
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
artifact="$here/out/SequencerUptimeFeed.json"

if [[ ! -d "$root/tools/node_modules/solc" ]]; then
  echo "build.sh: $root/tools/node_modules/solc missing; run: npm ci --prefix tools" >&2
  exit 1
fi

case "${1:-}" in
  "")
    node "$here/compile.js" "$artifact"
    echo "wrote ${artifact#"$root"/}"
    ;;
  --check)
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    node "$here/compile.js" "$tmp"
    if [[ ! -f "$artifact" ]]; then
      echo "build.sh --check: ${artifact#"$root"/} does not exist; run contracts/build.sh" >&2
      exit 1
    fi
    if ! diff -u --label "committed ${artifact#"$root"/}" --label "fresh build" "$artifact" "$tmp"; then
      echo "build.sh --check: ${artifact#"$root"/} is out of date; run contracts/build.sh and commit the result" >&2
      exit 1
    fi
    echo "build.sh --check: ${artifact#"$root"/} is up to date"
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
