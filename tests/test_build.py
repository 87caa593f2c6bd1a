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


def _all_ops(x, w, b, nt):
    return [fn.layer_norm(x, (33, 17), num_threads=nt),
            fn.layer_norm(x, 17, np.linspace(0.5, 1.5, 17, dtype=x.dtype),
                          np.linspace(-1, 1, 17, dtype=x.dtype), num_threads=nt),
            fn.rms_norm(x, 17, np.linspace(0.5, 1.5, 17, dtype=x.dtype), num_threads=nt),
            fn.batch_norm(x, None, None, w, b, training=True, num_threads=nt),
            fn.instance_norm(x, weight=w, bias=b, num_threads=nt),
            fn.group_norm(x, 4, w, b, num_threads=nt),
            fn.channel_layer_norm(x, w, b, num_threads=nt),
            fn.moments(x, axis=(0, 2), dtype=np.float64, num_threads=nt)[1]]


@pytest.mark.parametrize("variant", _dispatch.available_variants())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_agrees_and_is_deterministic(variant, dtype):
    """Each variant is bit-identical across thread counts; variants agree with the baseline
    within rounding (v3/v4 fuse multiply-adds in the apply step)."""
    rng = np.random.default_rng(3)
    x = rng.normal(7.0, 3.0, size=(4, 48, 33, 17)).astype(dtype)
    w = rng.uniform(0.5, 1.5, 48).astype(dtype)
    b = rng.normal(size=48).astype(dtype)
    with _dispatch.using("baseline"):
        ref = _all_ops(x, w, b, 1)
    with _dispatch.using(variant):
        runs = [_all_ops(x, w, b, nt) for nt in (1, 2, 3)]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for i, expected in enumerate(ref):
        for got in runs[1:]:
            np.testing.assert_array_equal(got[i], runs[0][i])
        np.testing.assert_allclose(runs[0][i], expected, rtol=tol, atol=tol)


def test_main_module_self_check_passes(tmp_path):
    # run outside the repository so that the installed package is imported
    out = subprocess.run([sys.executable, "-m", "fastnorm", "--check"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout
