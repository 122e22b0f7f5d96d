#!/usr/bin/env bash
# package.deb: builds the .deb of BUILD_DIR (cpack -G DEB), checks its control
# fields and files, installs it with dpkg -i, runs the installed recd (gen,
# train and the unit's serve command as the user recd), then dpkg -r (only
# the conffile, the user and /var/lib/recd stay) and dpkg -P (nothing stays).
# Needs root; skips (77) unless root, and refuses to touch a machine that has
# a recd package, user or state already. A failure purges what it installed.
#   tests/package/test_deb.sh BUILD_DIR VERSION
set -euo pipefail
build=$(realpath "$1")
version=$2
skip() {
  echo "package.deb: SKIPPED: $*" >&2
  exit 77
}
fail() {
  echo "package.deb: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i); run as root, as CI does"
if dpkg-query -W -f='${db:Status-Abbrev}' recd 2>/dev/null | grep -q .; then
  skip "a recd package is on this machine ($(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' recd)); not touching it"
fi
for what in "user:$(getent passwd recd || true)" "group:$(getent group recd || true)"; do
  [ "${what#*:}" = "" ] || skip "a ${what%%:*} recd exists; not touching it"
done
for f in /var/lib/recd /etc/default/recd; do
  [ ! -e "$f" ] || skip "$f exists; not touching it"
done

tmp=$(mktemp -d)
installed=0
server=
cleanup() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  [ "$installed" -eq 0 ] || dpkg -P recd >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Every path named recd, recd.* or recd_* outside /proc, /sys, /tmp and the
# build trees: after the purge it must be what it was before the install.
names() {
  find /etc /usr /var -xdev \( -name recd -o -name 'recd.*' -o -name 'recd_*' \) -print 2>/dev/null | sort
}
names >"$tmp/names.before"

# --- the package --------------------------------------------------------------
cpack -G DEB -B "$tmp/pkg" --config "$build/CPackConfig.cmake" >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb=$(echo "$tmp"/pkg/recd_"$version"_*.deb)
[ -f "$deb" ] || fail "cpack wrote no recd_${version}_*.deb"
[ "$(dpkg-deb -f "$deb" Package)" = recd ] || fail "Package is not recd"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version is not $version"
depends=$(dpkg-deb -f "$deb" Depends)
# dpkg-shlibdeps names the library packages (their soname numbers vary by release).
for dep in adduser libc6 libgrpc libprotobuf-c liblmdb libopenblas libcsv libxxhash libmicrohttpd; do
  echo "$depends" | grep -Eq "(^|, )${dep}[0-9]*( |,|$)" || fail "Depends lacks $dep: $depends"
done
dpkg-deb -c "$deb" | awk '{print $6}' >"$tmp/contents"
for f in ./usr/bin/recd ./usr/share/man/man1/recd.1.gz ./usr/share/doc/recd/README.md ./usr/share/doc/recd/haproxy-cluster.cfg \
  ./usr/lib/systemd/system/recd.service ./etc/default/recd; do
  grep -qxF "$f" "$tmp/contents" || fail "the package lacks $f"
done
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/default/recd ] || fail "conffiles is not /etc/default/recd"

# --- install ------------------------------------------------------------------
installed=1
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i failed"; }
IFS=: read -r _ _ uid _ _ home shell <<<"$(getent passwd recd)" || fail "dpkg -i created no user recd"
[ "$uid" -lt 1000 ] || fail "recd is not a system user (uid $uid)"
[ "$home" = /var/lib/recd ] || fail "the home of recd is $home"
case $shell in */nologin | */false) ;; *) fail "recd has the login shell $shell" ;; esac
[ "$(stat -c '%U:%G %a' /var/lib/recd)" = "recd:recd 750" ] || fail "/var/lib/recd is $(stat -c '%U:%G %a' /var/lib/recd)"
[ "$(command -v recd)" = /usr/bin/recd ] || fail "recd on PATH is $(command -v recd), not /usr/bin/recd"
out=$(/usr/bin/recd --version | head -n 1)
case $out in "recd $version" | "recd $version "*) ;; *) fail "the installed recd --version printed '$out'" ;; esac
# --man=no: its man check runs man, which leaves a cat page in /var/cache/man.
systemd-analyze verify --man=no /lib/systemd/system/recd.service || fail "systemd-analyze verify rejects recd.service"

# --- the installed binary, as the user recd -----------------------------------
as_recd=(setpriv --reuid=recd --regid=recd --init-groups --)
"${as_recd[@]}" /usr/bin/recd gen --users 200 --items 50 --events 3000 --output /var/lib/recd/history.csv 2>/dev/null
"${as_recd[@]}" /usr/bin/recd train --input /var/lib/recd/history.csv --model /var/lib/recd/model \
  --iterations 3 >/dev/null 2>"$tmp/train.log" || { cat "$tmp/train.log" >&2; fail "recd train failed"; }
[ -L /var/lib/recd/model/current ] || fail "recd train published no model in /var/lib/recd/model"

# The unit's command line with the flags of /etc/default/recd, on a free port.
line=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/recd.service)
# shellcheck source=/dev/null
RECD_OPTS=$(. /etc/default/recd && echo "${RECD_OPTS-}")
read -ra cmd <<<"${line//\$RECD_OPTS/$RECD_OPTS} --listen 127.0.0.1:0 --port-file /var/lib/recd/port"
"${as_recd[@]}" "${cmd[@]}" 2>"$tmp/serve.log" &
server=$!
for _ in $(seq 300); do
  [ -s /var/lib/recd/port ] || ! kill -0 "$server" 2>/dev/null && break
  sleep 0.1
done
[ -s /var/lib/recd/port ] || { cat "$tmp/serve.log" >&2; fail "${cmd[*]} did not start"; }
addr=127.0.0.1:$(cat /var/lib/recd/port)
/usr/bin/recd query --server "$addr" recommend u000 -k 3 >/dev/null || fail "Recommend failed"
/usr/bin/recd query --server "$addr" event u000 i01 view >/dev/null || fail "RecordEvents failed"
kill -TERM "$server"
status=0
wait "$server" || status=$?
server=
[ "$status" -eq 0 ] || { cat "$tmp/serve.log" >&2; fail "recd serve exited with $status after SIGTERM"; }
[ "$(stat -c %U /var/lib/recd/events)" = recd ] || fail "no event store of recd in /var/lib/recd/events"

# --- remove: the conffile, the user and /var/lib/recd stay --------------------
dpkg -L recd >"$tmp/files"
conffiles=$(dpkg-query -W -f='${Conffiles}' recd | awk '{print $1}')
dpkg -r recd >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -r failed"; }
while read -r f; do
  if echo "$conffiles" | grep -qxF "$f"; then
    [ -f "$f" ] || fail "dpkg -r removed the conffile $f"
  elif [ -d "$f" ] && [ ! -L "$f" ]; then
    # A folder stays only while another package has it or it holds others' files.
    dpkg -S "$f" >/dev/null 2>&1 || [ -n "$(ls -A "$f")" ] || fail "dpkg -r left the empty folder $f"
  elif [ -e "$f" ] || [ -L "$f" ]; then
    fail "dpkg -r left $f"
  fi
done <"$tmp/files"
getent passwd recd >/dev/null || fail "dpkg -r removed the user recd"
[ -L /var/lib/recd/model/current ] || fail "dpkg -r removed the model in /var/lib/recd"

# --- purge: nothing stays -----------------------------------------------------
dpkg -P recd >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -P failed"; }
installed=0
! dpkg-query -W recd >/dev/null 2>&1 || fail "dpkg still knows recd after dpkg -P"
! getent passwd recd >/dev/null || fail "dpkg -P left the user recd"
! getent group recd >/dev/null || fail "dpkg -P left the group recd"
names >"$tmp/names.after"
diff "$tmp/names.before" "$tmp/names.after" >&2 || fail "dpkg -P left these paths (> lines)"
echo "package.deb: ok ($(basename "$deb"): installed, trained, served, removed, purged; Depends: $depends)"
