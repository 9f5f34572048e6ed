#!/usr/bin/env bash
# Build the committed artifacts contracts/out/<Name>.json with the pinned solc
# (tools/node_modules/solc), one per contract in CONTRACTS.
#
#   contracts/build.sh           compile and (re)write every artifact
#   contracts/build.sh --check   compile to temp files; exit 1 if any differs from its artifact
#                                (prints a diff and names each stale artifact)
set -euo pipefail

CONTRACTS=(SequencerUptimeFeed UptimeReporter)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

if [[ ! -d "$root/tools/node_modules/solc" ]]; then
  echo "build.sh: $root/tools/node_modules/solc missing; run: npm ci --prefix tools" >&2
  exit 1
fi

case "${1:-}" in
  "")
    for name in "${CONTRACTS[@]}"; do
      artifact="$here/out/$name.json"
      node "$here/compile.js" "$name" "$artifact"
      echo "wrote ${artifact#"$root"/}"
    done
    ;;
  --check)
    tmpdir="$(mktemp -d)"
    trap 'rm -rf "$tmpdir"' EXIT
    stale=()
    for name in "${CONTRACTS[@]}"; do
      artifact="$here/out/$name.json"
      rel="${artifact#"$root"/}"
      node "$here/compile.js" "$name" "$tmpdir/$name.json"
      if [[ ! -f "$artifact" ]]; then
        echo "build.sh --check: $rel does not exist; run contracts/build.sh" >&2
        stale+=("$rel")
      elif ! diff -u --label "committed $rel" --label "fresh build" "$artifact" "$tmpdir/$name.json"; then
        echo "build.sh --check: $rel is out of date; run contracts/build.sh and commit the result" >&2
        stale+=("$rel")
      else
        echo "build.sh --check: $rel is up to date"
      fi
    done
    if ((${#stale[@]})); then
      echo "build.sh --check: stale: ${stale[*]}" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
