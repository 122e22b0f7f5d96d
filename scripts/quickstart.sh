#!/usr/bin/env bash
# The main job on an embedded default: installs what is missing, builds, then
# generates a synthetic shop, trains a recommendation and a churn model, serves
# them on 127.0.0.1, asks for recommendations and churn scores through the
# real gRPC client, prints them and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
scripts/build.sh build
recd=$PWD/build/recd
work=$(mktemp -d /tmp/recd-quickstart.XXXXXX)
server=
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
step "generate a synthetic shop (5,000 members, 800 items, 120,000 purchases)"
"$recd" gen --users 5000 --items 800 --events 120000 --seed 42 --output "$work/shop.csv"
head -3 "$work/shop.csv"

step "train implicit ALS and a 90-day churn model, publish both into LMDB"
"$recd" train --input "$work/shop.csv" --model "$work/model" --factors 32 --iterations 10 \
  --churn-horizon 90d 2>&1 | grep -E "^train: (iter|publ)|ROC-AUC|^churn:   (logistic|recency)|^churn: (risk|segments)"

step "serve it over gRPC on 127.0.0.1"
"$recd" serve --model "$work/model" --listen 127.0.0.1:0 --port-file "$work/port" &
server=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
addr=127.0.0.1:$(cat "$work/port")
q() { "$recd" query --server "$addr" "$@"; }

step "model info"
q info
member=$(awk -F, 'NR > 1 {n[$1]++} END {for (u in n) if (n[u] > best) {best = n[u]; who = u}; print who}' "$work/shop.csv")
step "\"guess you like\" for member $member (never an item they bought)"
q recommend "$member" -k 10
step "an unknown visitor gets the best sellers"
q recommend new-visitor-1 -k 5
item=$(awk -F, 'NR == 2 {print $2}' "$work/shop.csv")
step "items similar to $item"
q similar "$item" -k 5
step "why member $member might churn"
q churn "$member"
step "push campaign: the 10 members most likely to churn, as CSV"
q targets --min-prob 0.5 --limit 10 --csv
step "stop the server"
kill -TERM "$server"
wait "$server"
server=
echo "done."
