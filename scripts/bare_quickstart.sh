#!/usr/bin/env bash
# The quick start on a bare Debian 12 machine: builds (or takes from the cache)
# a minimal bookworm root with mmdebstrap from the mirror apt uses, copies a
# clean clone of the committed HEAD into it (uncommitted changes are NOT
# tested), and runs scripts/quickstart.sh there in a chroot with /proc, /sys
# and /dev mounted. Fails unless it printed recommendations and churn scores.
# Needs root and the Debian mirror. Run by scripts/test.sh.
#   RECD_BARE_CACHE    cache folder (default ${XDG_CACHE_HOME:-/var/cache}/recd-test);
#                      it holds only the base root, never what recd installs
#   RECD_BARE_REFRESH=1  rebuild the base root even if it is cached (it is
#                      rebuilt anyway when older than 30 days)
#   RECD_BARE_TIMEOUT  seconds for the quick start in the root (default 1800)
#   RECD_BARE_TMPFS=0  the root on the disk (/tmp) instead of a tmpfs
#   RECD_BARE_KEEP=1   keep the root (on the disk) and the log, for debugging
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "bare: $*" >&2; }
die() {
  say "$*"
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  die "needs root (mmdebstrap, mount and chroot); the suite runs as root in CI: run it as root"
fi
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: scripts/setup.sh test installs it"
command -v chroot >/dev/null || die "chroot is missing"

# The bookworm, bookworm-updates and bookworm-security main sources apt uses
# (one-line and deb822 formats); a fresh Debian 12 machine has the same three.
sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
           i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
           uri = $i; suite = $(i + 1)
           for (j = i + 2; j <= NF; j++) if ($j == "main") print uri, suite
         }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush() {
           if (deb && main && en) { n = split(uris, u, " "); m = split(suites, s, " ")
             for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b] }
           deb = main = 0; en = 1; uris = suites = ""
         }
         BEGIN { en = 1 }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         { key = tolower($1); sub(/:$/, "", key); $1 = ""; val = $0; sub(/^ +/, "", val) }
         key == "types" && (" " val " ") ~ / deb / { deb = 1 }
         key == "uris" { uris = val }
         key == "suites" { suites = val }
         key == "components" && (" " val " ") ~ / main / { main = 1 }
         key == "enabled" && tolower(val) == "no" { en = 0 }
         END { flush() }' "$f"
  done
}
mirrors=()
while read -r uri suite; do
  case $suite in
    bookworm | bookworm-updates | bookworm-security) ;;
    *) continue ;;
  esac
  line="deb $uri $suite main"
  case " ${mirrors[*]+"${mirrors[*]}"} " in *" $line "*) continue ;; esac
  mirrors+=("$line")
done < <(sources | awk '!seen[$0]++')
if ! printf '%s\n' "${mirrors[@]+"${mirrors[@]}"}" | grep -q ' bookworm main$'; then
  mirrors=("deb http://deb.debian.org/debian bookworm main" "${mirrors[@]+"${mirrors[@]}"}")
fi

# A proxy host apt goes through is the network's, not the machine's: the root's
# apt gets it too (mmdebstrap writes --aptopt into the root), as do the
# *_proxy variables.
aptopts=()
while IFS= read -r opt; do aptopts+=("--aptopt=$opt"); done < <(apt-config dump |
  grep -E '^Acquire::(http|https|ftp)::Proxy(::[^ ]+)? ' || true)
envs=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!v:-}" ] && envs+=("$v=${!v}")
done

# minbase: Essential and Priority: required (apt, bash, coreutils, mawk, ...),
# no compiler, cmake, git or python: the quick start must install those.
variant=minbase
arch=$(dpkg --print-architecture)
key=$(printf '%s\n' "$variant" "$arch" "${mirrors[@]}" "${aptopts[@]+"${aptopts[@]}"}" | sha256sum | cut -c1-12)
cache=${RECD_BARE_CACHE:-${XDG_CACHE_HOME:-/var/cache}/recd-test}
base=$cache/bookworm-$variant-$arch-$key.tar
mkdir -p "$cache"
t0=$SECONDS
# One builder at a time; a base root older than 30 days is built again (it is
# what a fresh install would be, and building it takes about a minute).
exec 9>"$cache/lock"
flock 9
if [ ! -s "$base" ] || [ "${RECD_BARE_REFRESH:-0}" = 1 ] || [ -n "$(find "$base" -mtime +30)" ]; then
  say "building the base root ($variant) from: ${mirrors[*]}"
  rm -f "$base.tmp"
  if ! mmdebstrap --quiet --variant="$variant" --architectures="$arch" --format=tar \
    "${aptopts[@]+"${aptopts[@]}"}" bookworm "$base.tmp" "${mirrors[@]}" >"$cache/mmdebstrap.log" 2>&1; then
    tail -n 30 "$cache/mmdebstrap.log" >&2
    rm -f "$base.tmp"
    die "mmdebstrap failed (log: $cache/mmdebstrap.log)"
  fi
  mv "$base.tmp" "$base"
  say "base root cached in $base ($((SECONDS - t0)) s)"
else
  say "base root from the cache: $base"
fi
exec 9>&-

tmp=$(mktemp -d /tmp/recd-bare.XXXXXX)
root=$tmp/root
log=$tmp/quickstart.log
# Anything still mounted under $root (deepest first).
mounts_under() { awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r; }
qs='' tailer=''
cleanup() {
  local rc=$? p m
  trap - EXIT INT TERM
  set +e
  [ -n "$qs" ] && kill -TERM "$qs" 2>/dev/null
  [ -n "$tailer" ] && kill -TERM "$tailer" 2>/dev/null
  # Processes left in the root (a server after a timeout): ours, by pid.
  local killed=0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2>/dev/null && killed=1
  done
  [ "$killed" = 1 ] && sleep 1
  for m in $(mounts_under); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
  done
  if [ -n "$(mounts_under)" ]; then
    say "still mounted under $root, leaving it in place: $(mounts_under | tr '\n' ' ')"
  elif [ "${RECD_BARE_KEEP:-0}" = 1 ]; then
    say "kept $tmp"
  else
    rm -rf --one-file-system "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir "$root"
# On a tmpfs by default (dpkg's syncs and the removal cost nothing there; about
# 1 GB of memory while it runs); RECD_BARE_TMPFS=0 puts it on the disk.
if [ "${RECD_BARE_TMPFS:-1}" = 1 ] && [ "${RECD_BARE_KEEP:-0}" != 1 ]; then
  mount -t tmpfs -o size=6g,mode=755 tmpfs "$root"
fi
t1=$SECONDS
tar -C "$root" -xf "$base"
say "base root extracted into $root ($((SECONDS - t1)) s)"
for tool in gcc cc cmake git make python3; do
  if chroot "$root" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c "command -v $tool" >/dev/null; then
    die "the base root already has $tool: it is not a bare machine"
  fi
done
head=$(git rev-parse HEAD)
git clone --quiet --no-checkout --no-hardlinks "$(git rev-parse --path-format=absolute --git-common-dir)" \
  "$root/root/recd"
git -C "$root/root/recd" checkout --quiet --detach "$head"
say "clean clone of $head in the root (uncommitted changes are not tested)"
[ -n "$(git status --porcelain --untracked-files=no)" ] && say "note: this worktree has uncommitted changes"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

# Private mounts: nothing mounted or unmounted in the root propagates to the
# host's /dev where / is a shared mount (systemd's default).
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --make-private "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount --make-private "$root/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"

limit=${RECD_BARE_TIMEOUT:-1800}
say "running scripts/quickstart.sh in the root (at most $limit s)"
t1=$SECONDS
rc=0
# In the background, so that a signal to this script runs the cleanup at once.
timeout -k 30 "$limit" chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 TERM=dumb "${envs[@]+"${envs[@]}"}" bash -c 'cd /root/recd && scripts/quickstart.sh' </dev/null >"$log" 2>&1 &
qs=$!
tail -n +1 -f --pid="$qs" "$log" &
tailer=$!
wait "$qs" || rc=$?
qs=
wait "$tailer" || true
tailer=
say "quick start in the root: exit $rc after $((SECONDS - t1)) s"

# Recommendations: a ranked list with scores after the "guess you like" step;
# churn: the churn probability of that member.
fail=()
[ "$rc" -eq 0 ] || fail+=("exit status $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')")
awk '/^== "guess you like"/ {on = 1; next} /^== / {on = 0}
     on && /^ +[0-9]+  [^ ]+ +-?[0-9]+\.[0-9][0-9][0-9][0-9]$/ {n++} END {exit !(n >= 5)}' "$log" ||
  fail+=("no recommendations with scores")
grep -Eq '^churn probability  [01]\.[0-9]{3}  \([a-z]+ risk\)$' "$log" || fail+=("no churn probability")
grep -q '^user_id,churn_probability,risk_band' "$log" || fail+=("no churn targets")
grep -qx 'done.' "$log" || fail+=("did not finish")
if [ ${#fail[@]} -gt 0 ]; then
  why=$(printf '%s, ' "${fail[@]}")
  say "FAILED: ${why%, }; the log's tail:"
  tail -n 40 "$log" >&2
  exit 1
fi
say "ok: recommendations and churn scores printed on a bare Debian 12 root ($((SECONDS - t0)) s in all)"
