#!/usr/bin/env bash
# The whole test suite: installs what is missing, then, in this order (README
# "Tests" says what each covers):
#   format; the normal build (unit, integration, quality, soak, package);
#   valgrind on it; every build type with gcc and clang-14; ASan+UBSan;
#   ThreadSanitizer; libFuzzer short runs; the quick start on a bare Debian 12
#   root (mmdebstrap, chroot; needs root and the mirror).
# Prints one summary line per stage and "N passed, N failed" at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test || exit 1
export OPENBLAS_NUM_THREADS=1
passed=0 failed=0
stage() { # name, command...
  local name=$1 start=$SECONDS
  shift
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
  fi
}
ctest_in() { # build dir, ctest args...
  local dir=$1
  shift
  (cd "$dir" && ctest --output-on-failure "$@")
}
# One unit test binary under valgrind; its report goes to BINARY.valgrind.log.
# Not under valgrind (~40x slower): the BG/NBD recovery check fits 9 x 20,000
# simulated members (20 s natively, ~15 min there) and runs no code that
# test_clv's other tests do not.
valgrind_unit() {
  valgrind -q --trace-children=yes --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    "$1" --jobs 1 --filter '!(clv/recovers_cdnow_parameters_from_simulation)' \
    >/dev/null 2>"$1.valgrind.log" || { cat "$1.valgrind.log"; return 1; }
}
export -f valgrind_unit
# Each binary is one single-threaded valgrind process: one per core at once.
valgrind_units() {
  local t
  for t in build/tests/test_*; do [ -x "$t" ] && echo "$t"; done |
    xargs -P "$(nproc)" -I{} bash -c 'valgrind_unit {}'
}

# The tests are built only when asked for; warnings fail the suite's builds.
suite=(-DRECD_TESTS=ON -DRECD_WERROR=ON)
# git names the files: an empty list would pass without checking anything.
stage "format" bash -c 'files=$(git ls-files "*.c" "*.h") && [ -n "$files" ] && clang-format --dry-run -Werror $files'
if scripts/build.sh build "${suite[@]}"; then
  stage "tests (build/)" ctest_in build
  # The same binaries: valgrind's emulated CPU has no AVX-512, so they pick
  # their AVX2 (or baseline) kernels at run time.
  stage "valgrind unit tests" valgrind_units
  stage "valgrind server" env RECD_VALGRIND=1 bash -c 'cd build && ctest --output-on-failure -R "integration.(service|realtime|churn|bad_inputs|http)"'
else
  failed=$((failed + 1))
fi
# The normal build above is gcc RelWithDebInfo with the same flags; the TSan
# and fuzz builds below are clang-14 RelWithDebInfo with -Werror (the server,
# the libraries and the fuzz targets; the tests' own sources are built with
# clang-14 in Debug and Release here).
stage "every build type with gcc and clang-14, no warning" \
  env RECD_MATRIX_SKIP="gcc-RelWithDebInfo clang-14-RelWithDebInfo" scripts/build_matrix.sh
# Not the soak: ASan's quarantine of freed memory (256 MiB) makes RSS grow
# by design, so its verdict means nothing there.
if scripts/build.sh build-asan "${suite[@]}" -DRECD_SANITIZE=ON; then
  stage "tests under ASan+UBSan (build-asan/)" env ASAN_OPTIONS=detect_leaks=1 RECD_ASAN=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash -c 'cd build-asan && ctest --output-on-failure -E "quality|soak"'
else
  failed=$((failed + 1))
fi
# A race fails the test: halt_on_error stops the process at the first
# report (exit 66), and the integration conftest fails on any report in a
# server's or a command's output. The suppressions are for uninstrumented
# third-party libraries only (tests/tsan.supp says why). The suites are the
# ones that run calls, the watcher, the stores' and the bus's threads at once; not the
# unit tests: criterion's runner crashes under TSan (a SEGV inside the
# uninstrumented libcriterion before any test runs), so only recd is built.
if { cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
    "${suite[@]}" -DRECD_TSAN=ON && cmake --build build-tsan -j"$(nproc)" --target recd; } \
    >build-tsan.log 2>&1 || { cat build-tsan.log; false; }; then
  stage "tests under TSan (build-tsan/)" env \
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
    bash -c 'cd build-tsan && ctest --output-on-failure -R "^integration\.(service|realtime|swap|experiment|metrics|security|bad_inputs|churn|cluster|http)$"'
else
  failed=$((failed + 1))
fi
# Only the libraries and the fuzz targets: the rest is built by gcc above.
if { cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
    -DRECD_FUZZ=ON -DRECD_WERROR=ON && cmake --build build-fuzz -j"$(nproc)" --target fuzz_all; } >build-fuzz.log 2>&1 || { cat build-fuzz.log; false; }; then
  stage "fuzz (short run)" bash -c 'cd build-fuzz && ctest --output-on-failure -R "^fuzz\."'
else
  failed=$((failed + 1))
fi
# A clean clone of HEAD (what is committed) in a minimal bookworm root: only
# what scripts/setup.sh build installs there, as on a fresh machine.
stage "quick start on a bare Debian 12 root" scripts/bare_quickstart.sh
echo
echo "stages: $passed passed, $failed failed, $SECONDS s in all"
[ "$failed" -eq 0 ]
