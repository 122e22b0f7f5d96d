#!/usr/bin/env bash
# Recommend calls/s over HTTP/JSON next to gRPC, in the same run, on one
# server (README "JSON over HTTP"):
#   1. generates a shop and trains a model in a temporary folder;
#   2. starts `recd serve --http-listen` on 127.0.0.1 (--threads 2);
#   3. for each concurrency: h2load over gRPC (tools/bench/grpc_load.py,
#      HTTP/2, one call in flight per connection) and h2load --h1 over
#      HTTP/1.1 with keep-alive (one request in flight per connection), the
#      same Recommend(user, k) each time;
#   4. `recd bench json`: the JSON codec's microseconds per call apart.
# Prints one JSON line per run, then a table.
#     scripts/bench_http.sh [--build DIR] [--users N] [--items N] [--events N]
#                           [--seconds S] [--concurrency "1 8 32"] [-k K]
# Needs h2load (nghttp2-client, scripts/setup.sh bench).
set -euo pipefail
build=build users=20000 items=2000 events=400000 seconds=3 conc="1 8 32" k=10
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --items) items=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    -k) k=$2; shift 2 ;;
    *) echo "bench_http: unknown argument $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
recd=$build/recd
work=$(mktemp -d /tmp/recd-bench-http.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$recd" gen --users "$users" --items "$items" --events "$events" --seed 1 --output "$work/shop.csv" 2>/dev/null
"$recd" train --input "$work/shop.csv" --model "$work/m" --factors 64 --iterations 8 --threads 2 \
  >/dev/null 2>&1
"$recd" serve --model "$work/m" --listen 127.0.0.1:0 --threads 2 --port-file "$work/port" \
  --http-listen 127.0.0.1:0 --http-port-file "$work/hport" 2>"$work/server.log" &
pid=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
port=$(cat "$work/port") hport=$(cat "$work/hport")
user=$(sed -n 2p "$work/shop.csv" | cut -d, -f1)
"$recd" bench body recommend "$user" -k "$k" --output "$work/body.grpc"
printf '{"userId":"%s","k":%s}' "$user" "$k" >"$work/body.json"
# utime + stime of process $1, in clock ticks.
cpu_ticks() {
  local s
  s=$(cat "/proc/$1/stat")
  s=${s##*) }  # from the state on: utime and stime are the 12th and 13th fields
  set -- $s
  echo $(( ${12} + ${13} ))
}
results=()
for c in $conc; do
  g=$(python3 "$here/tools/bench/grpc_load.py" --port "$port" --pid "$pid" \
      --method /recd.v1.Recommender/Recommend --body "$work/body.grpc" --concurrency "$c" \
      --seconds "$seconds")
  echo "$g"
  rm -f "$work/h1.log"
  cpu0=$(cpu_ticks "$pid")
  out=$(h2load --h1 -t 1 -c "$c" -m 1 -D "${seconds}s" -d "$work/body.json" --log-file "$work/h1.log" \
        -H 'content-type: application/json' "http://127.0.0.1:$hport/v1/Recommend")
  cpu1=$(cpu_ticks "$pid")
  rate=$(sed -n 's/.*finished in [0-9.]*s, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  # The log's columns: start (us), HTTP status, microseconds to the answer.
  h=$(python3 - "$work/h1.log" "$c" "$seconds" "$rate" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
us = sorted(int(c[2]) for c in (l.split() for l in open(sys.argv[1])) if len(c) == 3 and c[1] == "200")
failed = sum(1 for c in (l.split() for l in open(sys.argv[1])) if len(c) == 3 and c[1] != "200")
pct = lambda q: us[min(len(us) - 1, int(q * len(us)))] / 1e3 if us else None
print(json.dumps({"what": "http", "method": "/v1/Recommend", "concurrency": int(sys.argv[2]),
                  "seconds": float(sys.argv[3]), "calls_per_s": float(sys.argv[4]),
                  "succeeded": len(us), "failed": failed, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                  "server_cpu_us_per_call": int(sys.argv[5]) / int(sys.argv[6]) / len(us) * 1e6
                  if us else None}))
PY
)
  echo "$h"
  results+=("$c $(python3 -c 'import json,sys; d = [json.loads(a) for a in sys.argv[1:]]; print(d[0]["calls_per_s"], d[1]["calls_per_s"], round(d[0]["server_cpu_us_per_call"]), round(d[1]["server_cpu_us_per_call"]))' "$g" "$h")")
done
"$recd" bench json -k "$k"
echo
printf '%-12s %13s %13s %9s %15s %15s\n' concurrency grpc_calls/s http_calls/s http/grpc \
  grpc_cpu_us/call http_cpu_us/call
for r in "${results[@]}"; do
  read -r c g h gc hc <<<"$r"
  printf '%-12s %13.0f %13.0f %9.2f %15s %15s\n' "$c" "$g" "$h" "$(python3 -c "print($h / $g)")" "$gc" "$hc"
done
