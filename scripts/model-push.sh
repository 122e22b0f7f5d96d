#!/usr/bin/env bash
# Distributes the current model version of a trainer's model directory to
# the replicas of a cluster (README, Running a cluster):
#   scripts/model-push.sh MODEL_DIR DEST...
# DEST is a replica's model directory, local (/srv/recd/model) or remote
# (host:/srv/recd/model, over ssh). For each one: rsync of the immutable
# version folder into DEST/versions/, then the atomic switch of
# DEST/current (a new symlink renamed over the old one), which the replica's
# watcher picks up within its --reload-interval; a half-copied folder is
# never current. Prints the version; `recd query info` on each replica
# says which one it serves.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
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
      else mv -T '$dir/.push-$version' '$dir/versions/$version'; fi &&
      ln -sfn 'versions/$version' '$dir/.current.new' && mv -T '$dir/.current.new' '$dir/current'"
  echo "model-push: $dest now has $version current"
done
