#!/usr/bin/env bash
# Builds every standard CMake build type with gcc and with clang-14, tests
# included, warnings as errors: a distribution's or a user's build must not
# meet a warning that the suite's own RelWithDebInfo build does not show.
#   scripts/build_matrix.sh [OUT_DIR]   (default build-matrix/; one folder per build)
# RECD_MATRIX_SKIP="gcc-RelWithDebInfo ..." leaves out builds made elsewhere.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-matrix}
rc=0
mkdir -p "$out"
for cc in ${RECD_MATRIX_COMPILERS:-gcc clang-14}; do
  for type in ${RECD_MATRIX_TYPES:-Debug Release RelWithDebInfo MinSizeRel}; do
    dir=$out/$cc-$type
    case " ${RECD_MATRIX_SKIP:-} " in *" $cc-$type "*) continue ;; esac
    start=$SECONDS
    if { cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DCMAKE_C_COMPILER="$cc" \
           -DRECD_TESTS=ON -DRECD_WERROR=ON && cmake --build "$dir" -j"$(nproc)"; } >"$dir.log" 2>&1; then
      echo "matrix: $cc $type: ok ($((SECONDS - start)) s)"
    else
      echo "matrix: $cc $type: FAILED ($((SECONDS - start)) s); first errors:"
      grep -m 10 -E "error|warning" "$dir.log"
      rc=1
    fi
  done
done
exit $rc
