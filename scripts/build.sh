#!/usr/bin/env bash
# Configures and builds recd into DIR (default build/); extra args go to cmake.
#   scripts/build.sh [DIR] [-DRECD_SANITIZE=ON ...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "build: $dir" >&2
if ! { cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" &&
       cmake --build "$dir" -j"$(nproc)"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "build: FAILED ($dir)" >&2
  exit 1
fi
