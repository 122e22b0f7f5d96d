#!/usr/bin/env bash
# Distributes the current model version of a trainer's model directory to
# the replicas of a cluster (README, Running a cluster):
#   scripts/model-push.sh [--announce URLS [--bus-stream NAME]] MODEL_DIR DEST...
# DEST is a replica's model directory, local (/srv/recd/model) or remote
# (host:/srv/recd/model, over ssh). For each one: rsync of the immutable
# version folder into DEST/versions/ (copied beside it, then moved in whole,
# so a half-copied folder is never a version). Then:
#   - without --announce, the atomic switch of DEST/current (a new symlink
#     renamed over the old one), which the replica's watcher picks up within
#     its --reload-interval;
#   - with --announce nats://HOST:PORT[,...], once every DEST has the folder,
#     `recd model announce` on the cluster's bus: each replica makes the
#     version current itself, and `recd model status --bus URLS` says when
#     they all serve it. recd is $RECD_BIN, else the one on PATH.
# Prints the version.
set -euo pipefail
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
announce= stream=recd
while [ $# -gt 0 ]; do
  case $1 in
    --announce) [ $# -ge 2 ] || usage; announce=$2; shift 2 ;;
    --bus-stream) [ $# -ge 2 ] || usage; stream=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || usage
src=$1
shift
version=$(basename "$(readlink "$src/current")")
[ -n "$version" ] && [ -d "$src/versions/$version" ] || {
  echo "model-push: $src has no current version" >&2
  exit 1
}
for dest in "$@"; do
  if [[ $dest == *:* ]]; then host=${dest%%:*} dir=${dest#*:}; else host= dir=$dest; fi
  on() { if [ -n "$host" ]; then ssh "$host" "$@"; else bash -c "$*"; fi; }
  on "mkdir -p '$dir/versions'"
  # Copied beside versions/ and moved in whole: versions/ only ever holds
  # complete folders; a version already there is immutable and kept.
  rsync -a --delete "$src/versions/$version/" "$dest/.push-$version/"
  on "if [ -d '$dir/versions/$version' ]; then rm -rf '$dir/.push-$version';
      else mv -T '$dir/.push-$version' '$dir/versions/$version'; fi"
  if [ -n "$announce" ]; then
    echo "model-push: $dest has $version" >&2
  else
    on "ln -sfn 'versions/$version' '$dir/.current.new' && mv -T '$dir/.current.new' '$dir/current'"
    echo "model-push: $dest now has $version current"
  fi
done
if [ -n "$announce" ]; then
  "${RECD_BIN:-recd}" model announce --model "$src" --bus "$announce" --bus-stream "$stream" >/dev/null
  echo "model-push: $version announced on $announce; recd model status --bus $announce says when every replica serves it"
fi
