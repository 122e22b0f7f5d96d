#!/usr/bin/env bash
# Benchmark of real-time personalization (not a test: it prints figures).
#   scripts/bench_realtime.sh [USERS ITEMS EVENTS]   default 50000 10000 1000000
# Prints the latency of a plain Recommend, of Recommends that fold fresh
# events in (a new member, a known member with new events) and of Health/Check,
# one call at a time from the C client, as ratios to the plain call; then the
# event store's durable ingest rate (group commit) against one commit per event.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-50000} items=${2:-10000} events=${3:-1000000}
scripts/build.sh build >/dev/null
recd=$PWD/build/recd
work=$(mktemp -d /tmp/recd-bench.XXXXXX)
server=
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
echo "shop: $users users x $items items x $events events; model: 64 factors"
"$recd" gen --users "$users" --items "$items" --events "$events" --seed 3 --output "$work/shop.csv" 2>/dev/null
"$recd" train --input "$work/shop.csv" --model "$work/model" --iterations 10 >/dev/null 2>&1
"$recd" serve --model "$work/model" --events "$work/events" --listen 127.0.0.1:0 \
  --port-file "$work/port" --threads 2 2>/dev/null &
server=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
q() { "$recd" query --server "127.0.0.1:$(cat "$work/port")" "$@"; }
read -r known fresh <<<"$(awk -F, 'NR > 1 && NR < 5000 {n[$1]++} END {k = 0; for (u in n) {print u; if (++k == 2) break}}' "$work/shop.csv" | xargs)"
mapfile -t some_items < <(awk -F, 'NR > 1 && NR < 200 {print $2}' "$work/shop.csv" | sort -u | head -20)
for item in "${some_items[@]}"; do
  q event new-member "$item" view >/dev/null
  q event "$fresh" "$item" cart >/dev/null
done
n=3000
row() { # label, query args...
  local label=$1
  shift
  q --json --repeat "$n" "$@" | python3 -c "import json,sys; d=json.load(sys.stdin); print('$label', d['p50_ms'], d['p99_ms'], d['calls_per_s'])"
}
{
  row plain recommend "$known"
  row fold-in-new-member recommend new-member
  row fold-in-known-member recommend "$fresh"
  row session-cart recommend "" --context "${some_items[0]}" --context "${some_items[1]}"
  row health health
} | awk 'NR == 1 {base = $2}
         {printf "%-22s p50 %7.3f ms  p99 %7.3f ms  %7.0f calls/s  p50 x%.2f of plain\n", $1, $2, $3, $4, $2 / base}'
echo
mkdir -p "$work/bench-store"
"$recd" events bench --events "$work/bench-store"
