#!/usr/bin/env bash
# A soak of `recd serve`: is its memory flat over a long run at a steady
# fraction of its peak throughput? README "Speed" has a 10-minute run's
# figures; tests/integration/test_soak.py runs a short one. On generated data:
#   1. `recd gen` a shop, `recd train` a model (with churn) on it
#   2. `recd serve` it on 127.0.0.1 with an event store and /metrics
#   3. the peak: Recommend calls/s under h2load for --peak-seconds
#   4. --warmup seconds, then the measured window, of Recommend at --fraction
#      of that peak (h2load --rps, one call in flight per client), while
#      tools/bench/soak_writer.py records events of real and new shoppers,
#      asks for their (folded-in) recommendations and churn scores; the
#      server's VmRSS / RssAnon / RssFile and call counters are sampled
#   5. SIGTERM (the server must exit 0), then a summary: calls/s against the
#      target, failed calls (server non-OK statuses, h2load's and the
#      writer's errors), RSS at the start and end of the window, its max and
#      least-squares slope, and the verdict "flat" or "GROWING" on RssAnon
#      (tools/bench/soak_report.py says why anonymous memory is the measure)
#
#   scripts/soak.sh [options]
#     --shop U,I,EVENTS   generated shop (default 20000,5000,300000)
#     --factors F         (default 64)
#     --iterations N      ALS iterations (default 5)
#     --minutes M         measured window (default 10)
#     --seconds S         measured window in seconds, instead of --minutes
#     --warmup S          seconds at the target rate before the window (default 30)
#     --fraction F        target = F x the measured peak (default 0.8)
#     --clients C         h2load connections, one call in flight each (default 8)
#     --peak-seconds S    length of the peak measurement (default 5)
#     --sample-seconds S  between samples (default 5)
#     --write-rate R      writer ticks per second, each 1-4 events + a Recommend
#                         + a churn score (default 20)
#     --threads N         server worker threads (default: number of CPUs)
#     --threshold-mib M   "flat": RssAnon grew less than M MiB ... (default 4)
#     --threshold-pct P   ... or less than P% of its start, the larger (default 2)
#     --out DIR           keep samples.csv, soak.svg (when gnuplot is there),
#                         summary.json and the server's log there (default: a
#                         new folder recd-soak-<time> under ${TMPDIR:-/tmp})
#     --recd PATH         a recd binary to soak (default: build build/ first)
# Exit status 0 when the verdict is flat, no call failed and the server exited
# 0 on SIGTERM; 1 otherwise. Needs h2load (nghttp2-client) and python3-grpcio
# and python3-grpc-tools (`scripts/setup.sh test`). The shop, model and event
# store go to a folder under ${TMPDIR:-/tmp}, removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
shop=20000,5000,300000 factors=64 iterations=5 window=600 warmup=30 fraction=0.8 clients=8
peak_seconds=5 sample_seconds=5 write_rate=20 threads=$(nproc) threshold_mib=4 threshold_pct=2
out= recd=
while [ $# -gt 0 ]; do
  case $1 in
    --shop) shop=$2; shift ;;
    --factors) factors=$2; shift ;;
    --iterations) iterations=$2; shift ;;
    --minutes) window=$(awk -v m="$2" 'BEGIN {print m * 60}'); shift ;;
    --seconds) window=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --fraction) fraction=$2; shift ;;
    --clients) clients=$2; shift ;;
    --peak-seconds) peak_seconds=$2; shift ;;
    --sample-seconds) sample_seconds=$2; shift ;;
    --write-rate) write_rate=$2; shift ;;
    --threads) threads=$2; shift ;;
    --threshold-mib) threshold_mib=$2; shift ;;
    --threshold-pct) threshold_pct=$2; shift ;;
    --out) out=$(realpath -m "$2"); shift ;;
    --recd) recd=$(realpath "$2"); shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
py=/usr/bin/python3
scripts/setup.sh test
if [ -z "$recd" ]; then
  scripts/build.sh build >/dev/null
  recd=$PWD/build/recd
fi
[ -n "$out" ] || out=${TMPDIR:-/tmp}/recd-soak-$(date +%Y%m%dT%H%M%S)
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/recd-soak.XXXXXX")
server= h2load_pid= writer_pid= sampler_pid=
stop_pid() { # pid: SIGTERM, then wait
  if [ -n "$1" ]; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  stop_pid "$h2load_pid"
  stop_pid "$writer_pid"
  stop_pid "$sampler_pid"
  stop_pid "$server"
  rm -rf "$work"
}
trap cleanup EXIT
note() { echo "soak: $*" >&2; }

IFS=, read -r users items events <<<"$shop"
note "shop $users users x $items items x $events events; $factors factors, $iterations iterations"
"$recd" gen --users "$users" --items "$items" --events "$events" --seed 11 \
  --output "$work/shop.csv" 2>/dev/null
"$recd" train --input "$work/shop.csv" --model "$work/model" --factors "$factors" \
  --iterations "$iterations" --threads 2 --churn-horizon 90d >/dev/null 2>"$work/train.log" ||
  { cat "$work/train.log" >&2; exit 1; }

"$recd" serve --model "$work/model" --events "$work/events" --listen 127.0.0.1:0 \
  --port-file "$work/port" --metrics-listen 127.0.0.1:0 --metrics-port-file "$work/mport" \
  --threads "$threads" 2>"$out/serve.log" &
server=$!
"$recd" bench ready --port-file "$work/port" --since "$EPOCHREALTIME" >/dev/null
for _ in $(seq 100); do [ -s "$work/mport" ] && break; sleep 0.05; done
port=$(cat "$work/port") mport=$(cat "$work/mport")
# h2load's user: a real member of the shop, scored from the model alone.
user=$(awk -F, 'NR == 2 {print $1}' "$work/shop.csv")
"$recd" bench body recommend "$user" -k 10 --output "$work/recommend.bin"

scrape() { # the Prometheus text of the server, over bash's /dev/tcp
  (
    exec 3<>"/dev/tcp/127.0.0.1/$mport"
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    cat <&3
  )
}
# The server's counters, summed into "recommend_ok calls_ok calls_shed
# calls_failed events_ingested fold_ins".
counters() {
  scrape | awk '
    /^recd_calls_total\{transport="grpc"/ {
      if ($0 ~ /code="OK"/) { ok += $NF; if ($0 ~ /\/Recommend"/) rec += $NF }
      else if ($0 ~ /code="RESOURCE_EXHAUSTED"/) shed += $NF
      else bad += $NF
    }
    /^recd_events_ingested_total / { ev = $NF }
    /^recd_fold_ins_total / { fold = $NF }
    END { printf "%d %d %d %d %d %d\n", rec, ok, shed, bad, ev, fold }'
}
memory() { # "VmRSS RssAnon RssFile" in kB of the server
  awk '/^(VmRSS|RssAnon|RssFile):/ {v[$1] = $2}
       END {print v["VmRSS:"], v["RssAnon:"], v["RssFile:"]}' "/proc/$server/status"
}

note "peak: h2load, $clients clients, $peak_seconds s"
"$py" tools/bench/grpc_load.py --port "$port" --pid "$server" --method /recd.v1.Recommender/Recommend \
  --body "$work/recommend.bin" --concurrency "$clients" --seconds "$peak_seconds" >"$out/peak.json"
read -r peak peak_failed peak_bytes < <("$py" -c 'import json, sys
d = json.load(open(sys.argv[1])); print(d["calls_per_s"], d["failed"], d["data_bytes_per_call"])' \
  "$out/peak.json")
# A timed h2load run (-D) resets the calls in flight when its time is up:
# the server sees their streams end before the request message came and
# counts INVALID_ARGUMENT ("no complete request message arrived") for a
# client that has gone. With one call in flight per client that is at most
# --clients calls; anything else is a real failure. (The soak itself runs
# h2load with a number of requests, -n, and ends without cutting any off.)
read -r _ _ _ bad _ _ <<<"$(counters)"
peak_cut=$(scrape | awk '/^recd_calls_total\{transport="grpc".*\/Recommend",code="INVALID_ARGUMENT"\}/ {n += $NF}
                         END {print n + 0}')
if [ "$bad" -ne "$peak_cut" ] || [ "$peak_cut" -gt "$clients" ] || [ "$peak_failed" -ne 0 ] ||
  awk -v b="$peak_bytes" 'BEGIN {exit !(b < 10)}'; then
  note "the peak measurement had failed calls ($bad non-OK, of which $peak_cut INVALID_ARGUMENT;" \
    "h2load: $peak_failed failed, $peak_bytes bytes a call)"
  exit 1
fi
rps=$(awk -v p="$peak" -v f="$fraction" -v c="$clients" 'BEGIN {r = int(p * f / c + 0.5); print (r < 1 ? 1 : r)}')
target=$((rps * clients))
total=$(awk -v w="$warmup" -v s="$window" 'BEGIN {print int(w + s + 0.5)}')
note "peak $peak calls/s; target $target calls/s ($clients clients x $rps), $warmup s warm-up + $window s window"

echo "t_s,phase,vmrss_kb,rss_anon_kb,rss_file_kb,recommend_ok,calls_ok,calls_shed,calls_failed,events_ingested,fold_ins" \
  >"$out/samples.csv"
sample() { # t, phase
  local m c
  m=$(memory) c=$(counters)
  echo "$1,$2,${m// /,},${c// /,}" >>"$out/samples.csv"
}
t_start=$EPOCHREALTIME
elapsed() { awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'; }
sample 0.0 warmup
timeout "$((total * 3 + 60))" h2load -t1 -c "$clients" -m1 --rps "$rps" -n "$((rps * clients * total))" \
  -d "$work/recommend.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
  "http://127.0.0.1:$port/recd.v1.Recommender/Recommend" >"$out/h2load.txt" 2>&1 &
h2load_pid=$!
"$py" tools/bench/soak_writer.py --port "$port" --shop "$work/shop.csv" --seconds "$total" \
  --rate "$write_rate" --churn >"$out/writer.json" 2>"$out/writer.log" &
writer_pid=$!
(
  trap 'exit 0' TERM
  n=0
  while kill -0 "$server" 2>/dev/null; do
    n=$((n + 1))
    # Sleep until the next multiple of the interval, whatever sampling took.
    sleep "$(awk -v a="$t_start" -v b="$EPOCHREALTIME" -v n="$n" -v s="$sample_seconds" \
      'BEGIN {d = a + n * s - b; printf "%.3f", (d > 0 ? d : 0)}')" &
    wait $!
    t=$(elapsed)
    sample "$t" "$(awk -v t="$t" -v w="$warmup" 'BEGIN {print (t < w ? "warmup" : "window")}')"
  done
) &
sampler_pid=$!
rc=0
wait "$h2load_pid" || { note "h2load exited $?"; rc=1; }
h2load_pid=
wait "$writer_pid" || { note "the writer exited $?"; cat "$out/writer.log" >&2; rc=1; }
writer_pid=
stop_pid "$sampler_pid"
sampler_pid=
kill -0 "$server" 2>/dev/null || { note "the server died; its log: $out/serve.log"; exit 1; }
sample "$(elapsed)" end
"$recd" events stats --events "$work/events" >"$out/events-stats.txt" 2>&1 || true
du -sk "$work/events" | awk '{print "event store on disk", $1, "kB"}' >>"$out/events-stats.txt"

kill -TERM "$server"
server_rc=0
wait "$server" || server_rc=$?
server=
if [ "$server_rc" -ne 0 ]; then
  note "the server exited $server_rc after SIGTERM; its log: $out/serve.log"
  rc=1
fi
"$py" tools/bench/soak_report.py --samples "$out/samples.csv" --warmup "$warmup" --peak "$peak" \
  --target "$target" --h2load "$out/h2load.txt" --writer "$out/writer.json" \
  --threshold-mib "$threshold_mib" --threshold-pct "$threshold_pct" \
  --peak-cut "$peak_cut" --svg "$out/soak.svg" --json "$out/summary.json" || rc=1
echo "  event store: $(sed -n 's/^events *//p' "$out/events-stats.txt" | head -1) events," \
  "$(sed -n 's/^event store on disk //p' "$out/events-stats.txt")"
echo "  files: $out (samples.csv$([ -s "$out/soak.svg" ] && echo ", soak.svg"), summary.json, serve.log)"
exit "$rc"
