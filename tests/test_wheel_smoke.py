"""The wheel smoke test (scripts/smoke.py) passes with every kernel variant this machine runs,
and, where qemu-x86_64 is installed, the dispatcher picks `baseline` on an emulated CPU
without AVX (scripts/qemu_smoke.sh runs the full set of emulated CPUs).

smoke.py checks every op against float64 NumPy formulas in a fresh process, the way a user's
process meets the installed package; running it here keeps it working. It lives in the
repository's scripts/, which an unpacked sdist has not: then these tests skip.
"""
import os
import pathlib
import platform
import shutil
import subprocess
import sys

import pytest

from fastnorm import _dispatch

SMOKE = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "smoke.py"

pytestmark = pytest.mark.skipif(not SMOKE.is_file(), reason="scripts/smoke.py is not here")


def _run(cmd, tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "FASTNORM_KERNELS"}
    environ.update(env)
    return subprocess.run(cmd, env=environ, capture_output=True, text=True, cwd=tmp_path,
                          timeout=600)


@pytest.mark.parametrize("variant", _dispatch.available_variants())
def test_smoke_script_passes_with_every_variant(variant, tmp_path):
    out = _run([sys.executable, str(SMOKE), "-q", "--expect-variant", variant], tmp_path,
               FASTNORM_KERNELS=variant)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"passed with kernel variant {variant}" in out.stdout


def test_smoke_script_reports_a_wrong_variant(tmp_path):
    out = _run([sys.executable, str(SMOKE), "-q", "--expect-variant", "no-such-variant"],
               tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "expected 'no-such-variant'" in out.stdout


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64"
                    or not sys.platform.startswith("linux"),
                    reason="needs qemu-x86_64 (Debian: apt-get install qemu-user) on x86-64 Linux")
def test_baseline_is_chosen_and_passes_on_an_emulated_cpu_without_avx(tmp_path):
    out = _run(["qemu-x86_64", "-cpu", "Westmere", sys.executable, str(SMOKE), "-q",
                "--expect-variant", "baseline"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cpu_x86_64_level     1" in out.stdout
    assert "passed with kernel variant baseline" in out.stdout
