#!/usr/bin/env bash
# package.install: `cmake --install BUILD --prefix P` puts recd, its man page,
# README, the systemd unit and its flags file under P; the unit runs P's
# binary with P's flags file; the man page renders without groff warnings and
# has a section for every command of `recd --help`.
#   tests/package/test_install.sh BUILD_DIR VERSION
set -euo pipefail
build=$1
version=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "package.install: $*" >&2
  exit 1
}

p=$tmp/prefix
cmake --install "$build" --prefix "$p" >"$tmp/install.log" || { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
for f in bin/recd share/man/man1/recd.1.gz share/doc/recd/README.md share/doc/recd/haproxy.cfg share/doc/recd/haproxy-cluster.cfg \
  lib/systemd/system/recd.service etc/default/recd; do
  [ -f "$p/$f" ] || fail "cmake --install did not install $f"
done

# The first line starts with "recd VERSION" (help2man takes it for the page).
out=$("$p/bin/recd" --version | head -n 1)
case $out in "recd $version" | "recd $version "*) ;; *) fail "recd --version printed '$out', not 'recd $version ...'" ;; esac

# The man page: no groff warnings, and one subsection per command.
zcat "$p/share/man/man1/recd.1.gz" | groff -man -Tascii -P-cbou -ww >"$tmp/recd.txt" 2>"$tmp/groff.log"
[ ! -s "$tmp/groff.log" ] || { cat "$tmp/groff.log" >&2; fail "groff warns about recd.1"; }
grep -q "^SYNOPSIS" "$tmp/recd.txt" || fail "recd.1 has no SYNOPSIS"
commands=$("$p/bin/recd" --help | sed -n '/^commands:/,$s/^  \([a-z]*\) .*/\1/p')
[ -n "$commands" ] || fail "no commands in recd --help"
for c in $commands; do
  grep -q "^   recd $c\$" "$tmp/recd.txt" || fail "recd.1 has no section for recd $c"
done
grep -q -- "--model DIR" "$tmp/recd.txt" || fail "recd.1 lacks the options of recd serve"

# The unit follows the prefix, and systemd accepts it.
unit=$p/lib/systemd/system/recd.service
grep -qxF "ExecStart=$p/bin/recd serve --model /var/lib/recd/model --events /var/lib/recd/events \$RECD_OPTS" \
  "$unit" || fail "ExecStart of $unit is not $p/bin/recd serve ..."
grep -qxF "EnvironmentFile=-$p/etc/default/recd" "$unit" || fail "EnvironmentFile of $unit is not $p/etc/default/recd"
# --man=no: recd.1 is under P, where man does not look.
systemd-analyze verify --man=no "$unit" || fail "systemd-analyze verify rejects $unit"
echo "package.install: ok ($p: recd $version, man page with $(wc -w <<<"$commands") commands, unit)"
