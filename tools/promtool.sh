#!/usr/bin/env bash
# Runs Prometheus's `promtool` with the given arguments, fetching it on first use.
#
#   tools/promtool.sh check rules deploy/prometheus/alerts.yml
#   tools/promtool.sh test rules deploy/prometheus/alerts_test.yml
#
# promtool comes from Debian bookworm's `prometheus` package, pinned to upstream version
# PROMTOOL_VERSION (any Debian revision of it: bookworm's point releases rebuild it as
# +b6, +deb12u1, ..., and the mirror keeps only the current one). The .deb is fetched with
# `apt-get download` (signature- and hash-checked by apt against the signed package index) and
# only usr/bin/promtool is extracted into tools/.promtool/ (git-ignored). Nothing is installed
# system-wide and root is not needed: if the machine's package lists do not offer the pinned
# version, the script reads fresh lists into tools/.promtool/apt/ instead of running
# `apt-get update` on the system.
#
# PROMTOOL=/path/to/promtool skips all of this and runs that binary.
set -euo pipefail

PROMTOOL_VERSION=2.42.0
cache="$(cd "$(dirname "$0")" && pwd)/.promtool"
bin="$cache/promtool-$PROMTOOL_VERSION"

if [[ -n "${PROMTOOL:-}" ]]; then
    exec "$PROMTOOL" "$@"
fi
if [[ -x "$bin" ]]; then
    exec "$bin" "$@"
fi

die() {
    echo "tools/promtool.sh: $*" >&2
    echo "tools/promtool.sh: install promtool $PROMTOOL_VERSION yourself and set PROMTOOL=/path/to/promtool" >&2
    exit 1
}

for tool in apt-get apt-cache dpkg-deb tar; do
    command -v "$tool" >/dev/null || die "needs $tool (a Debian or Ubuntu machine) to fetch promtool"
done
[[ "$(dpkg --print-architecture)" == amd64 || "$(dpkg --print-architecture)" == arm64 ]] ||
    die "no prebuilt promtool for architecture $(dpkg --print-architecture)"

mkdir -p "$cache"
work="$(mktemp -d "$cache/fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

apt_opts=()
if [[ "$(id -u)" == 0 ]]; then
    # apt drops to user _apt for downloads, which may not reach a directory under the checkout.
    apt_opts+=(-o APT::Sandbox::User=root)
fi
# The newest Debian revision of the pinned upstream version that the current package lists offer.
pinned_version() {
    apt-cache "${apt_opts[@]}" madison prometheus 2>/dev/null |
        awk -F'|' '{ gsub(/ /, "", $2); print $2 }' |
        grep -E "^${PROMTOOL_VERSION//./\\.}\+ds-" | head -n 1 || true
}
download() {
    local version
    version="$(pinned_version)"
    [[ -n "$version" ]] || return 1
    echo "tools/promtool.sh: fetching Debian package prometheus=$version for promtool" >&2
    (cd "$work" && apt-get "${apt_opts[@]}" -q download "prometheus=$version" >&2)
}

# First with the machine's package lists; if they are missing, stale or lack the package, with
# fresh lists of the same sources read into our own directory (works without root).
if ! download; then
    echo "tools/promtool.sh: prometheus $PROMTOOL_VERSION not available through the system's package lists (missing or stale); reading fresh lists" >&2
    mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial"
    # Our own lists and cache, no lock on the system's, and none of the update hooks (an
    # image's clean-up hook would try to delete files in /var/cache/apt).
    cat >"$cache/apt/apt.conf" <<CONF
Dir::State::Lists "$cache/apt/lists/";
Dir::Cache "$cache/apt/cache/";
Debug::NoLocking "true";
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
CONF
    apt_opts+=(-c "$cache/apt/apt.conf")
    apt-get "${apt_opts[@]}" -q update >&2 || die "apt-get update failed (are the Debian mirrors reachable?)"
    download || die "no Debian package prometheus $PROMTOOL_VERSION+ds-* in this machine's apt sources (Debian bookworm has it)"
fi

deb=("$work"/prometheus_*.deb)
[[ -f "${deb[0]}" ]] || die "apt-get download left no .deb"
dpkg-deb --fsys-tarfile "${deb[0]}" | tar -x -C "$work" ./usr/bin/promtool ||
    die "${deb[0]} holds no usr/bin/promtool"
"$work/usr/bin/promtool" --version 2>&1 | grep -q "version $PROMTOOL_VERSION" ||
    die "the extracted promtool is not version $PROMTOOL_VERSION: $("$work/usr/bin/promtool" --version 2>&1 | head -n 1)"
mv -f "$work/usr/bin/promtool" "$bin"
rm -rf "$work" "$cache/apt"
trap - EXIT
exec "$bin" "$@"
