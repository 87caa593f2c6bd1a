#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer build of fastnorm's extension modules.
#
#   1. copy the working tree (tracked and untracked, not ignored files: no build/, no .c)
#      to a temporary directory and build it there with
#      CFLAGS/LDFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" into a private
#      site directory (`pip install --target`, no dependencies);
#   2. check that every extension module is instrumented (links libasan, calls __asan_*)
#      and that the tests will import that build, not another installed fastnorm;
#   3. run pytest on tests/ (or the arguments given) with the sanitizer runtime preloaded
#      (LD_PRELOAD=libasan.so; CPython is not instrumented, so the runtime must come first),
#      ASAN_OPTIONS=detect_leaks=0 (CPython leaks by design) and PYTHONMALLOC=malloc (so
#      Python objects, Cython memoryview structs included, live in ASan-checked memory);
#      every process -- forked children and the scenario subprocesses of the tests
#      included -- writes its reports to a log directory;
#   4. fail (exit 1) if pytest fails or if any process wrote an AddressSanitizer report.
#
# Usage: scripts/asan.sh [pytest arguments]      (default: tests/ -q)
#   e.g. scripts/asan.sh tests/test_reliability.py tests/test_hypothesis.py -q
# Environment:
#   PYTHON     interpreter whose environment has numpy, pytest, hypothesis (and torch for the
#              oracle tests) -- default: python3. Cython/setuptools from it are used for the
#              build when present, else pip fetches them (isolated build).
#   CC         compiler (default: gcc); its libasan is preloaded.
#   FASTNORM_OPENMP=0  build serial kernels (otherwise an ASan build without OpenMP is an
#              error: the parallel kernels are what most needs checking)
#   ASAN_KEEP  set to 1 to keep the work directory (build and logs).
# The huge-buffer tests stay off unless FASTNORM_HUGE_TESTS=1 (they need ~9 GB; ASan's
# shadow memory adds 1/8 more).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PY=${PYTHON:-python3}
cc=${CC:-gcc}
start=$(date +%s)
step() { echo; echo "=== asan: $* ($(( $(date +%s) - start ))s)"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/fastnorm-asan.XXXXXX")
cleanup() {
    if [ "${ASAN_KEEP:-0}" = 1 ]; then echo "asan: work directory kept: $work"
    else rm -rf "$work"; fi
}
trap cleanup EXIT

libasan=$($cc -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
    echo "asan: $cc has no libasan.so (install the compiler's sanitizer runtime)" >&2
    exit 2
fi
libasan=$(readlink -f "$libasan")

step "copy the working tree"
mkdir -p "$work/src" "$work/site" "$work/logs"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # (files deleted in the working tree but still in the index are skipped)
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
        | (cd "$repo" && tar cf - --null --ignore-failed-read -T - 2>/dev/null) \
        | tar xf - -C "$work/src"
else
    tar cf - --exclude=./build --exclude=./.git . | tar xf - -C "$work/src"
fi
rm -f "$work/src"/fastnorm/*.c "$work/src"/fastnorm/*.so

step "build the extension modules with -fsanitize=address"
san="-fsanitize=address -fno-omit-frame-pointer -g"
# the flags go into CC as well: setup.py's OpenMP probe links an executable, and distutils
# links executables with CC alone (no LDFLAGS); without them the probe fails and the build
# silently falls back to serial kernels
isolation=(--no-build-isolation)
if ! "$PY" -c "import Cython, setuptools" 2>/dev/null; then
    isolation=()           # pip fetches the build requirements into an isolated environment
fi
if ! CC="$cc $san" CFLAGS="$san" LDFLAGS="$san" "$PY" -m pip install -v --no-deps --no-cache-dir \
        "${isolation[@]}" --target "$work/site" "$work/src" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log"
    echo "asan: the ASan build failed" >&2
    exit 1
fi

step "check the build"
n_ext=0
for so in "$work/site"/fastnorm/*.so; do
    n_ext=$((n_ext + 1))
    deps=$(ldd "$so")
    syms=$(nm -D "$so")
    if [[ "$deps" != *libasan* || "$syms" != *__asan_* ]]; then
        echo "asan: $so is not instrumented" >&2
        exit 1
    fi
done
if [ "$n_ext" -lt 3 ]; then
    echo "asan: only $n_ext extension modules were built" >&2
    exit 1
fi
echo "asan: $n_ext instrumented extension modules; runtime $libasan"

# Every process started from here on preloads the runtime. A safety net for the shared
# machine: ASan kills any such process whose resident memory passes the limit (qemu user
# emulation under the preloaded runtime, for one, grows past 20 GB within a minute).
if [ "${FASTNORM_HUGE_TESTS:-0}" = 1 ]; then rss_limit=16000; else rss_limit=6000; fi
# qemu-x86_64 (tests/test_wheel_smoke.py's emulated-CPU test) cannot host the runtime: a
# stub earlier in PATH refuses to run it, and that test is deselected below
mkdir -p "$work/bin"
printf '#!/bin/sh\necho "qemu-x86_64 is disabled under scripts/asan.sh" >&2\nexit 97\n' \
    >"$work/bin/qemu-x86_64"
chmod +x "$work/bin/qemu-x86_64"
export PATH="$work/bin:$PATH"
export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:log_path=$work/logs/asan:detect_stack_use_after_return=1:hard_rss_limit_mb=$rss_limit"
export PYTHONMALLOC=malloc
export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
# the tests' own subprocesses (python -c ...) inherit all of the above

where=$(cd "$work" && "$PY" -c "import fastnorm, os; print(os.path.dirname(fastnorm.__file__))")
if [ "$where" != "$work/site/fastnorm" ]; then
    echo "asan: the tests would import $where, not the ASan build" >&2
    exit 1
fi
info=$(cd "$work" && "$PY" -c "import fastnorm, json; print(json.dumps(fastnorm.build_info()))")
echo "$info"
if [ "${FASTNORM_OPENMP:-1}" != 0 ] && [[ "$info" != *'"openmp": true'* ]]; then
    echo "asan: the ASan build has no OpenMP (see the probe in $work/build.log)" >&2
    ASAN_KEEP=1
    exit 1
fi

step "run the tests under AddressSanitizer"
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
    args=(tests/ -q)
fi
set +e
"$PY" -m pytest -p no:cacheprovider \
    --deselect tests/test_wheel_smoke.py::test_baseline_is_chosen_and_passes_on_an_emulated_cpu_without_avx \
    "${args[@]}"
status=$?
set -e

step "collect the reports"
reports=$(grep -l "AddressSanitizer" "$work"/logs/asan* 2>/dev/null || true)
if [ -n "$reports" ]; then
    for f in $reports; do
        echo "----- $f"
        head -60 "$f"
    done
    echo "asan: FAILED: AddressSanitizer reported errors (above)" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "asan: FAILED: pytest exited with $status (no AddressSanitizer report)" >&2
    exit 1
fi
echo "asan: OK: no AddressSanitizer report, tests passed ($(( $(date +%s) - start ))s)"
