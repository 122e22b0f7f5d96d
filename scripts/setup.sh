#!/usr/bin/env bash
# Installs the Debian packages recd needs that are missing (apt-get, as root).
#   scripts/setup.sh build   what building and running recd needs
#   scripts/setup.sh test    that, plus what the test suite needs
#   scripts/setup.sh bench   that, plus what scripts/bench.sh needs (h2load, numpy, faiss)
# README says why each package is there.
set -euo pipefail
build=(cmake make gcc pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev grpc-proto
       libopenblas-dev liblmdb-dev libcsv-dev libxxhash-dev gnuplot-nox libmicrohttpd-dev libjson-c-dev libgnutls28-dev libjs-chart.js libssl-dev help2man dpkg-dev file
       libnats-dev)
test=(libcriterion-dev python3 python3-grpcio python3-grpc-tools python3-pytest valgrind
      clang-format clang-14 libclang-rt-14-dev python3-h2 python3-prometheus-client openssl
      python3-numpy nghttp2-client systemd groff-base mmdebstrap git haproxy
      nats-server rsync chromium chromium-driver python3-selenium)
bench=(nghttp2-client python3-faiss python3-numpy)
want=("${build[@]}")
[ "${1:-build}" = test ] && want+=("${test[@]}")
[ "${1:-build}" = bench ] && want+=("${bench[@]}")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (or install those packages yourself)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
