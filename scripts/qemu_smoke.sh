#!/usr/bin/env bash
# Run scripts/smoke.py (every op against float64 NumPy formulas) with an installed fastnorm
# under qemu-x86_64 user-mode emulation of older x86-64 CPUs, to show that the portable build
# never executes AVX2/AVX-512 where the CPU lacks them and that the dispatcher picks the
# right kernel variant:
#
#   -cpu Westmere     x86-64-v2, no AVX            -> must choose `baseline`
#   -cpu SandyBridge  AVX but no AVX2/FMA          -> must choose `baseline`
#   -cpu Haswell      x86-64-v3 (AVX2, FMA, BMI2)  -> must choose `x86-64-v3`
#   negative control: -cpu Westmere with the x86-64-v3 kernels forced in (bypassing the
#                     dispatcher) must die of SIGILL, so the emulator really rejects AVX2
#                     and the passing baseline runs mean something.
#
# (QEMU 7.2's TCG emulates up to AVX2, not AVX-512, so no model here selects x86-64-v4.
# NumPy >= 2.x needs x86-64-v2 (SSE4.2, POPCNT) itself, so CPUs older than Nehalem, such as
# core2duo, cannot import NumPy at all: Westmere is the oldest useful model.)
#
# Usage: scripts/qemu_smoke.sh [--install-qemu] [PYTHON]
#   PYTHON          interpreter (e.g. a venv's bin/python) with fastnorm installed;
#                   default $PYTHON, else python3
#   --install-qemu  apt-get install qemu-user when qemu-x86_64 is missing (needs root; CI)
# Exits non-zero on the first failure. Takes ~10-30 s (the emulated runs are a few s each).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
install=0
py=${PYTHON:-python3}
for arg in "$@"; do
    case "$arg" in
        --install-qemu) install=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "qemu_smoke: unknown option $arg" >&2; exit 2 ;;
        *) py=$arg ;;
    esac
done
fail() { echo "qemu_smoke: FAILED: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || fail "needs an x86-64 host (this is $(uname -m))"
if ! command -v qemu-x86_64 >/dev/null; then
    [ "$install" = 1 ] || fail "qemu-x86_64 not found: apt-get install qemu-user (or pass --install-qemu)"
    echo "qemu_smoke: installing qemu-user"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq >/dev/null && apt-get install -y -qq qemu-user >/dev/null; }; then
        fail "apt-get install qemu-user"
    fi
fi
echo "qemu_smoke: $(qemu-x86_64 --version | head -1)"

# qemu-user runs ELF executables, not shims or scripts: use the interpreter's own path (a
# venv's bin/python is kept as is, so that the emulated Python finds the venv's packages)
exe=$("$py" -c 'import sys; print(sys.executable)') || fail "cannot run $py"
file_type=$(head -c 4 "$exe" | od -An -c | tr -d ' ')
[ "$file_type" = '177ELF' ] || fail "$exe is not an ELF executable"
"$py" -c 'import fastnorm' 2>/dev/null || fail "fastnorm is not installed for $exe"

# run outside any source tree, with no forced variant
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
cd "$run"
unset FASTNORM_KERNELS
export OMP_NUM_THREADS=2

quiet_qemu() {  # drop QEMU's "TCG doesn't support requested feature" notes (x2apic & co.)
    "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2)
}

smoke() {  # smoke CPU EXPECTED-VARIANT
    local start=$SECONDS
    echo
    echo "--- qemu-x86_64 -cpu $1: expect kernel variant $2"
    quiet_qemu timeout 600 qemu-x86_64 -cpu "$1" "$exe" "$here/smoke.py" -q \
        --expect-variant "$2" \
        || fail "smoke test under -cpu $1 (expected variant $2)"
    echo "--- -cpu $1 passed in $((SECONDS - start)) s"
}

echo
echo "--- host CPU, no emulation"
"$exe" "$here/smoke.py" -q || fail "smoke test on the host CPU"

smoke Westmere baseline
smoke SandyBridge baseline
smoke Haswell x86-64-v3

echo
echo "--- negative control: -cpu Westmere running the x86-64-v3 kernels must die of SIGILL"
set +e
timeout 600 qemu-x86_64 -cpu Westmere "$exe" "$here/smoke.py" -q --run-variant x86-64-v3 \
    >"$run/negative.log" 2>&1
rc=$?
set -e
tail -n 2 "$run/negative.log"
if [ "$rc" -eq 132 ] || grep -q "Illegal instruction" "$run/negative.log"; then
    echo "--- the emulated Westmere rejected AVX2 code (exit $rc): the check has teeth"
else
    fail "the x86-64-v3 kernels ran on the emulated Westmere (exit $rc): the emulator does not" \
         "enforce the CPU model, so the baseline runs above prove nothing"
fi

echo
echo "qemu_smoke: all passed (baseline on Westmere and SandyBridge, x86-64-v3 on Haswell)"
