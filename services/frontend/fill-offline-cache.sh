#!/usr/bin/env bash
# Fill services/frontend/offline/npm-cache with every package that package-lock.json pins; the
# Dockerfile then runs `npm ci --offline` from it (whenever it exists), so a docker build step
# needs no npm registry (scripts/offline-deps calls this on the host).
#
# The cache holds the host platform's optional binaries (@next/swc-*, @img/sharp-*), so run it
# on a host of the same CPU architecture as the image. Re-running is cheap: npm skips what the
# cache already has. Usage: services/frontend/fill-offline-cache.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/offline/npm-cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "fill-offline-cache: npm not found; install Node.js 20" >&2; exit 1; }
cp "$here/package.json" "$here/package-lock.json" "$work/"
mkdir -p "$cache"
cd "$work"

# Online pass: downloads metadata and tarballs into the cache (no install scripts needed).
npm ci --cache "$cache" --ignore-scripts --no-audit --no-fund --loglevel=error
# Offline pass: proves the cache alone is enough, exactly as the image's `npm ci` will use it.
rm -rf node_modules
npm ci --cache "$cache" --offline --ignore-scripts --no-audit --no-fund --loglevel=error

rm -rf "$cache/_logs" "$cache/_cacache/tmp"
echo "fill-offline-cache: $(du -sh "$cache" | cut -f1) in $cache"
