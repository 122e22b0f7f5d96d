#!/usr/bin/env bash
# recd's speed next to references, in one run (not a test: it prints figures;
# README "Speed" has a run's results). On generated data:
#   1. scoring, one query = all items scored + top-10, on one thread: recd's
#      own path on a published model read in place, numpy and faiss
#      IndexFlatIP on the same matrix and user vectors; what batching gains
#   2. gRPC Recommend against Health/Check on a real `recd serve` on
#      127.0.0.1 under h2load at concurrency 1, 8 and 64
#   3. the server's RSS against the model's size, and start to first answer
#   4. ALS seconds per iteration on a random matrix, and `recd gen` ->
#      `recd train` on a synthetic shop (seconds per iteration, peak RSS)
#   5. a cluster (tools/bench/cluster_bench.py): RecordEvents through the NATS
#      bus against local LMDB, visibility lag, Recommend through HAProxy
#      against direct, replica death to HAProxy's DOWN (printed as it runs)
#
#   scripts/bench.sh [options]
#     --items LIST        catalogue sizes for 1-3 (default 10000,100000,1000000)
#     --factors F         factors of those models (default 64)
#     --rounds R          scoring rounds of about 1 s each (default 3)
#     --grpc-seconds S    measured seconds of each h2load run (default 2)
#     --grpc-rounds R     h2load runs of each method and concurrency (default 2)
#     --als U,I,NNZ       random ALS matrix (default 100000,20000,5000000)
#     --als-iterations N  (default 5)
#     --shop U,I,EVENTS   synthetic shop for gen + train (default 1000000,100000,20000000)
#     --shop-iterations N (default 15)
#     --item-sizes LIST   catalogues of the item-item families next to ALS
#                         (default 10000,100000; 40 nonzeros per item, 2 users per item)
#     --skip-scoring, --skip-grpc, --skip-als, --skip-items, --skip-shop, --skip-cluster
#     --recd PATH         a recd binary to measure (default: build build/ first)
#     --against PATH      another recd binary (e.g. built -DRECD_MARCH=native) whose
#                         scoring is timed round by round next to recd's
#     --json FILE         also keep every raw figure (one JSON object a line)
# Needs `scripts/setup.sh bench` (h2load, numpy, faiss). Temporary files (GBs
# at the default sizes) go to a folder under ${TMPDIR:-/tmp}, removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
items=10000,100000,1000000 factors=64 rounds=3 grpc_seconds=2 grpc_rounds=2
als=100000,20000,5000000 als_iterations=5 shop=1000000,100000,20000000 shop_iterations=15
item_sizes=10000,100000
skip_scoring= skip_grpc= skip_als= skip_items= skip_shop= skip_cluster= recd= json= against=()
while [ $# -gt 0 ]; do
  case $1 in
    --items) items=$2; shift ;;
    --factors) factors=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --grpc-seconds) grpc_seconds=$2; shift ;;
    --grpc-rounds) grpc_rounds=$2; shift ;;
    --als) als=$2; shift ;;
    --als-iterations) als_iterations=$2; shift ;;
    --shop) shop=$2; shift ;;
    --shop-iterations) shop_iterations=$2; shift ;;
    --skip-scoring) skip_scoring=1 ;;
    --skip-grpc) skip_grpc=1 ;;
    --skip-als) skip_als=1 ;;
    --skip-items) skip_items=1 ;;
    --item-sizes) item_sizes=$2; shift ;;
    --skip-shop) skip_shop=1 ;;
    --skip-cluster) skip_cluster=1 ;;
    --recd) recd=$(realpath "$2"); shift ;;
    --against) against=(--against "$(realpath "$2")"); shift ;;
    --json) json=$(realpath -m "$2"); shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
py=/usr/bin/python3
scripts/setup.sh bench
if [ -z "$recd" ]; then
  scripts/build.sh build >/dev/null
  recd=$PWD/build/recd
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/recd-bench.XXXXXX")
server=
stop_server() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
  fi
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
out=$work/results.jsonl
note() { echo "bench: $*" >&2; }
# Figures of the host, for the table's header.
printf '{"what":"host","cpu":"%s","cpus":%d,"mem_gib":%d,"load":"%s"}\n' \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$(nproc)" \
  "$(($(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) / 1048576))" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"

"$recd" bench body recommend u0 -k 10 --output "$work/recommend.bin"
"$recd" bench body health --output "$work/health.bin"

# One catalogue: publish, score, references, serve under load, RSS.
catalogue() {
  local n=$1 m=$work/model-$1
  echo "{\"what\":\"catalogue\",\"items\":$n,\"factors\":$factors}" >>"$out"
  note "catalogue $n x $factors: publishing"
  "$recd" bench model --model "$m" --items "$n" --factors "$factors" \
    --matrix "$work/items.f32" --queries "$work/queries.f32" >>"$out"
  if [ -z "$skip_scoring" ]; then
    note "catalogue $n: recd scoring"
    "$recd" bench score --model "$m" --rounds "$rounds" "${against[@]}" >>"$out"
    note "catalogue $n: numpy and faiss"
    "$py" tools/bench/score_ref.py --matrix "$work/items.f32" --queries "$work/queries.f32" \
      --factors "$factors" --rounds "$rounds" >>"$out"
  fi
  rm -f "$work/items.f32" "$work/queries.f32"
  if [ -z "$skip_grpc" ]; then
    note "catalogue $n: gRPC"
    rm -f "$work/port"
    local t0=$EPOCHREALTIME
    "$recd" serve --model "$m" --listen 127.0.0.1:0 --port-file "$work/port" --threads "$(nproc)" \
      --reload-interval 0 2>"$work/serve.log" &
    server=$!
    "$recd" bench ready --port-file "$work/port" --since "$t0" >>"$out"
    local port r c
    port=$(cat "$work/port")
    for ((r = 0; r < grpc_rounds; r++)); do
      for c in 1 8 64; do
        for method in /grpc.health.v1.Health/Check:health /recd.v1.Recommender/Recommend:recommend; do
          "$py" tools/bench/grpc_load.py --port "$port" --pid "$server" --method "${method%:*}" \
            --body "$work/${method#*:}.bin" --concurrency "$c" --seconds "$grpc_seconds" >>"$out"
        done
      done
    done
    # The model's own resident pages: the Rss of its data.mdb mappings.
    printf '{"what":"rss","threads":%d,"model_rss_kb":%d,%s}\n' "$(nproc)" \
      "$(awk '/^[0-9a-f]+-/ {mdb = $NF ~ /data\.mdb$/} mdb && /^Rss:/ {kb += $2} END {print kb + 0}' \
        "/proc/$server/smaps")" \
      "$(awk '/^(VmRSS|VmHWM|RssAnon|RssFile):/ {sub(":", "", $1); printf "%s\"%s_kb\":%s", s, $1, $2; s = ","}' \
        "/proc/$server/status")" >>"$out"
    stop_server
  fi
  rm -rf "$m"
}

IFS=, read -ra sizes <<<"$items"
if [ -z "$skip_scoring" ] || [ -z "$skip_grpc" ]; then
  for n in "${sizes[@]}"; do catalogue "$n"; done
fi

if [ -z "$skip_als" ]; then
  IFS=, read -r u i z <<<"$als"
  note "ALS on a random $u x $i matrix with $z nonzeros"
  "$recd" bench train --users "$u" --items "$i" --nnz "$z" --factors 64 --threads 2 \
    --iterations "$als_iterations" >>"$out"
fi

if [ -z "$skip_items" ]; then
  IFS=, read -ra isizes <<<"$item_sizes"
  for n in "${isizes[@]}"; do
    note "item-item families next to ALS at $n items (EASE dense only up to 20000)"
    "$recd" bench items --users $((2 * n)) --items "$n" --nnz $((40 * n)) --factors "$factors" \
      --threads 2 --iterations "$als_iterations" >>"$out"
  done
fi

if [ -z "$skip_shop" ]; then
  IFS=, read -r u i z <<<"$shop"
  note "shop $u users x $i items x $z events: gen, train $shop_iterations iterations"
  /usr/bin/time -f '%e %M' -o "$work/gen.time" \
    "$recd" gen --users "$u" --items "$i" --events "$z" --seed 1 --output "$work/shop.csv" 2>/dev/null
  /usr/bin/time -f '%e %M' -o "$work/train.time" \
    "$recd" train --input "$work/shop.csv" --model "$work/shop-model" --threads 2 \
    --iterations "$shop_iterations" >/dev/null 2>"$work/train.log"
  read -r gen_s gen_kb <"$work/gen.time"
  read -r train_s train_kb <"$work/train.time"
  printf '{"what":"shop","users":%d,"items":%d,"events":%d,"csv_bytes":%d,"gen_s":%s,"gen_peak_kb":%d,"train_s":%s,"train_peak_kb":%d,"nonzeros":%d,"s_per_iteration":[%s]}\n' \
    "$u" "$i" "$z" "$(stat -c %s "$work/shop.csv")" "$gen_s" "$gen_kb" "$train_s" "$train_kb" \
    "$(sed -n 's/.* \([0-9]*\) nonzeros.*/\1/p' "$work/train.log" | head -1)" \
    "$(sed -n 's/^train: iteration *[0-9]*\/[0-9]* *\([0-9.]*\) s.*/\1/p' "$work/train.log" | paste -sd,)" \
    >>"$out"
  rm -rf "$work/shop.csv" "$work/shop-model"
fi

if [ -z "$skip_cluster" ]; then
  note "cluster: nats-server, 2 recd serve --bus replicas, HAProxy, on loopback"
  "$recd" gen --users 400 --items 150 --events 8000 --seed 7 --output "$work/cshop.csv" >/dev/null
  "$recd" train --input "$work/cshop.csv" --model "$work/cmodel" --factors 16 --iterations 8 \
    --threads 2 >/dev/null 2>&1
  RECD_BIN="$recd" "$py" tools/bench/cluster_bench.py "$work/cmodel" "$work/cluster"
fi

[ -n "$json" ] && cp "$out" "$json"
"$py" tools/bench/table.py "$out"
