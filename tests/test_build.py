"""What the build has: OpenMP on or off, kernel variants, dispatch."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _dispatch


def test_build_info_fields():
    info = fn.build_info()
    assert info["version"] == fn.__version__
    assert isinstance(info["openmp"], bool)
    assert info["max_threads"] >= 1
    assert info["kernel_variant"] in info["available_variants"]
    assert "baseline" in info["available_variants"]


@pytest.mark.skipif("FASTNORM_EXPECT_OPENMP" not in os.environ,
                    reason="CI states which build it made in FASTNORM_EXPECT_OPENMP")
def test_openmp_matches_the_build_ci_asked_for():
    expected = os.environ["FASTNORM_EXPECT_OPENMP"] == "1"
    assert fn.build_info()["openmp"] is expected


def test_forced_variant_by_environment(tmp_path):
    code = "import fastnorm; print(fastnorm.build_info()['kernel_variant'])"
    env = dict(os.environ, FASTNORM_KERNELS="baseline")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "baseline"


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown kernel variant"):
        _dispatch.use_variant("no-such-isa")


@pytest.mark.parametrize("variant", _dispatch.available_variants())
def test_every_variant_gives_the_same_bits(variant):
    # no FMA contraction, no reassociation: every variant rounds exactly alike
    rng = np.random.default_rng(3)
    x = rng.normal(7.0, 3.0, size=(4, 48, 33, 17)).astype(np.float32)
    previous = _dispatch.current
    try:
        _dispatch.use_variant("baseline")
        ref = [fn.layer_norm(x, (33, 17)), fn.batch_norm(x, training=True),
               fn.channel_layer_norm(x), fn.moments(x, axis=(0, 2), dtype=np.float64)[1]]
        _dispatch.use_variant(variant)
        got = [fn.layer_norm(x, (33, 17)), fn.batch_norm(x, training=True),
               fn.channel_layer_norm(x), fn.moments(x, axis=(0, 2), dtype=np.float64)[1]]
    finally:
        _dispatch.current = previous
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)


def test_main_module_self_check_passes(tmp_path):
    # run outside the repository so that the installed package is imported
    out = subprocess.run([sys.executable, "-m", "fastnorm", "--check"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout
