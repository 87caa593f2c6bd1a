"""fastnorm.moments against float64 NumPy: every axis combination, dtypes, keepdims, ddof,
non-contiguous inputs, ill-conditioned data, and bit-identical results across thread counts."""

import itertools

import numpy as np
import pytest

import fastnorm
from _helpers import NONCONTIG_KINDS, noncontig, rng_for

# Small shapes, with size-1 dims in several positions.
SHAPES = {
    1: [(13,), (1,)],
    2: [(5, 7), (1, 9)],
    3: [(4, 1, 6), (3, 5, 2)],
    4: [(3, 5, 1, 4), (1, 2, 3, 4)],
    5: [(2, 3, 1, 4, 5), (3, 1, 2, 1, 6)],
}


def _axis_specs(rank):
    specs = [None]
    specs += list(range(rank))
    specs += list(range(-rank, 0))
    for k in range(1, rank + 1):
        for sub in itertools.combinations(range(rank), k):
            specs.append(sub)
            # the same set as negative indices in reversed order
            specs.append(tuple(a - rank for a in reversed(sub)))
    return specs


AXIS_CASES = [(rank, axis) for rank in SHAPES for axis in _axis_specs(rank)]


def _reduced_count(shape, axis):
    if axis is None:
        return int(np.prod(shape))
    axes = (axis,) if isinstance(axis, int) else axis
    return int(np.prod([shape[a] for a in axes]))


def _reference(x, axis, ddof, keepdims):
    x64 = np.asarray(x, dtype=np.float64)
    mean = np.mean(x64, axis=axis, keepdims=keepdims)
    var = np.var(x64, axis=axis, ddof=ddof, keepdims=keepdims)
    return mean, var


def _check(x, axis, ddof, keepdims, out_dtype, **kw):
    mean, var = fastnorm.moments(x, axis=axis, ddof=ddof, keepdims=keepdims, **kw)
    rmean, rvar = _reference(x, axis, ddof, keepdims)
    mean, var = np.asarray(mean), np.asarray(var)
    assert mean.shape == rmean.shape, (mean.shape, rmean.shape)
    assert var.shape == rvar.shape, (var.shape, rvar.shape)
    assert mean.dtype == out_dtype, mean.dtype
    assert var.dtype == out_dtype, var.dtype
    if out_dtype == np.float64 and np.asarray(x).dtype == np.float64:
        tol = dict(rtol=1e-12, atol=1e-12)
    elif out_dtype == np.float64:
        tol = dict(rtol=1e-6, atol=1e-7)
    else:
        tol = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mean, rmean, **tol, err_msg="mean")
    np.testing.assert_allclose(var, rvar, **tol, err_msg="var")
    return mean, var


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rank,axis", AXIS_CASES, ids=[f"r{r}-ax{a}" for r, a in AXIS_CASES])
def test_every_axis_combination(rank, axis, dtype):
    n_checked = 0
    for si, shape in enumerate(SHAPES[rank]):
        x = (rng_for("moments", rank, axis, si).standard_normal(shape) * 2.0 + 3.0).astype(dtype)
        for keepdims in (False, True):
            for ddof in (0, 1):
                if _reduced_count(shape, axis) <= ddof:
                    continue  # invalid ddof: covered by test_validation_stats
                _check(x, axis, ddof, keepdims, np.dtype(dtype))
                n_checked += 1
    assert n_checked >= 4


def test_empty_axis_tuple_reduces_nothing():
    # NumPy's meaning of axis=(): every element is its own group; mean = x, var = 0.
    x = rng_for("empty-axis").standard_normal((3, 4))
    mean, var = fastnorm.moments(x, axis=())
    np.testing.assert_array_equal(np.asarray(mean), x)
    np.testing.assert_array_equal(np.asarray(var), np.zeros_like(x))


def test_default_axis_is_none_scalar_result():
    x = rng_for("default-axis").standard_normal((4, 5, 6)) + 1.0
    mean, var = fastnorm.moments(x)
    assert np.asarray(mean).shape == () and np.asarray(var).shape == ()
    np.testing.assert_allclose(mean, np.mean(x), rtol=1e-12)
    np.testing.assert_allclose(var, np.var(x), rtol=1e-12)
    mean_k, var_k = fastnorm.moments(x, keepdims=True)
    assert np.asarray(mean_k).shape == (1, 1, 1) and np.asarray(var_k).shape == (1, 1, 1)


def test_does_not_modify_input():
    x = rng_for("no-modify").standard_normal((6, 7)).astype(np.float32)
    x_copy = x.copy()
    fastnorm.moments(x, axis=0, ddof=1)
    np.testing.assert_array_equal(x, x_copy)


# --------------------------------------------------------------------------------------
# dtype=
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
def test_dtype_default_is_input_dtype(axis):
    x64 = rng_for("dtype-default", axis).standard_normal((5, 6, 7)) + 2.0
    for dtype in (np.float32, np.float64):
        mean, var = fastnorm.moments(x64.astype(dtype), axis=axis)
        assert np.asarray(mean).dtype == dtype and np.asarray(var).dtype == dtype


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
def test_dtype_float64_keeps_precision(axis):
    x = (rng_for("dtype-f64", axis).standard_normal((40, 30, 20)) * 3.0 + 7.0).astype(np.float32)
    mean, var = fastnorm.moments(x, axis=axis, ddof=1, dtype=np.float64)
    mean, var = np.asarray(mean), np.asarray(var)
    assert mean.dtype == np.float64 and var.dtype == np.float64
    rmean, rvar = _reference(x, axis, 1, False)
    np.testing.assert_allclose(mean, rmean, rtol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-6)
    # not merely a float32 result cast up: the float64 values carry more digits
    assert not np.array_equal(mean, mean.astype(np.float32).astype(np.float64))
    assert not np.array_equal(var, var.astype(np.float32).astype(np.float64))


def test_dtype_float64_on_float64_input_and_float32_output():
    x = rng_for("dtype-f32-out").standard_normal((50, 8)) + 1.0
    mean, var = fastnorm.moments(x, axis=0, dtype=np.float32)
    assert np.asarray(mean).dtype == np.float32 and np.asarray(var).dtype == np.float32
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-6)
    mean, var = fastnorm.moments(x, axis=0, dtype=np.float64)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-12)


# --------------------------------------------------------------------------------------
# non-contiguous inputs
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", NONCONTIG_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, (0, 1), (1, 2), (0, 2), (0, 1, 2)])
def test_non_contiguous_input(kind, dtype, axis):
    x = (rng_for("noncontig", kind, axis).standard_normal((6, 5, 7)) * 2 + 1).astype(dtype)
    v = noncontig(x, kind)
    assert not v.flags.c_contiguous
    for ddof in (0, 1):
        for keepdims in (False, True):
            m1, v1 = _check(v, axis, ddof, keepdims, np.dtype(dtype))
            # same values as for the contiguous copy (within rounding)
            m2, v2 = fastnorm.moments(x, axis=axis, ddof=ddof, keepdims=keepdims)
            np.testing.assert_allclose(m1, m2, rtol=1e-6 if dtype == np.float32 else 1e-12)
            np.testing.assert_allclose(v1, v2, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_transposed_2d_matrix_both_axes():
    base = rng_for("transposed2d").standard_normal((33, 17)) + 4.0
    xt = base.T  # (17, 33), F-contiguous
    for axis in (0, 1, None):
        _check(xt, axis, 1, False, np.dtype(np.float64))


# --------------------------------------------------------------------------------------
# ill-conditioned data
# --------------------------------------------------------------------------------------

ILL = [(1e6, 1.0), (1e4, 0.01), (1e5, 0.1)]


def _naive_float32_var(x, axis):
    x = np.asarray(x, dtype=np.float32)
    m = np.mean(x, axis=axis, dtype=np.float32)
    m2 = np.mean(x * x, axis=axis, dtype=np.float32)
    return (m2 - m * m).astype(np.float32)


def _rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64)
    return float(np.max(np.abs(got - ref) / np.abs(ref)))


@pytest.mark.parametrize("loc,scale", ILL)
@pytest.mark.parametrize("shape,axis", [((200_000,), None), ((1000, 64), 0), ((64, 1000), 1),
                                        ((16, 8, 250), (0, 2))])
def test_ill_conditioned_float32_variance(loc, scale, shape, axis):
    rng = rng_for("ill", loc, scale, shape)
    x = (loc + scale * rng.standard_normal(shape)).astype(np.float32)
    ref = np.var(x.astype(np.float64), axis=axis)

    _, var = fastnorm.moments(x, axis=axis)
    assert np.asarray(var).dtype == np.float32
    err = _rel_err(var, ref)
    assert err <= 1e-6, "fastnorm relative variance error %.3g" % err

    _, var64 = fastnorm.moments(x, axis=axis, dtype=np.float64)
    assert _rel_err(var64, ref) <= 1e-6

    # the naive single-pass float32 formula fails the same bound on the same data
    naive_err = _rel_err(_naive_float32_var(x, axis), ref)
    assert naive_err > 1e-6, "naive formula unexpectedly accurate: %.3g" % naive_err


def test_ill_conditioned_mean_exact_enough():
    x = (1e6 + rng_for("ill-mean").standard_normal(100_000)).astype(np.float32)
    mean, _ = fastnorm.moments(x, dtype=np.float64)
    ref = np.mean(x.astype(np.float64))
    assert abs(float(mean) - ref) <= 1e-9 * abs(ref)


# --------------------------------------------------------------------------------------
# bit-identical across thread counts
# --------------------------------------------------------------------------------------

THREAD_CASES = [
    (np.float32, (4_000_000,), None),
    (np.float32, (2000, 2000), 0),
    (np.float32, (2000, 2000), 1),
    (np.float32, (2000, 2000), None),
    (np.float32, (16, 32, 64, 128), (0, 2, 3)),
    (np.float32, (16, 32, 64, 128), (1, 2, 3)),
    (np.float32, (16, 32, 64, 128), (2, 3)),
    (np.float32, (2, 1_500_000), 1),
    (np.float32, (3, 1_000_000), 0),
    (np.float64, (1024, 2048), 0),
    (np.float64, (1024, 2048), -1),
    (np.float64, (2_500_000,), 0),
    (np.float64, (8, 300, 1000), (0, 2)),
]


@pytest.mark.parametrize("dtype,shape,axis", THREAD_CASES,
                         ids=[f"{np.dtype(d).name}-{s}-{a}" for d, s, a in THREAD_CASES])
def test_bit_identical_across_thread_counts(dtype, shape, axis):
    rng = rng_for("threads", shape, axis)
    x = (rng.standard_normal(shape, dtype=np.float32) * 3 + 50).astype(dtype)
    results = {}
    for nt in (1, 2, 3, None):
        mean, var = fastnorm.moments(x, axis=axis, ddof=1, num_threads=nt)
        results[nt] = (np.asarray(mean).tobytes(), np.asarray(var).tobytes())
    for nt in (2, 3, None):
        assert results[nt][0] == results[1][0], "mean differs: num_threads=%s vs 1" % nt
        assert results[nt][1] == results[1][1], "var differs: num_threads=%s vs 1" % nt
    # and the values are right
    mean, var = fastnorm.moments(x, axis=axis, ddof=1, num_threads=2, dtype=np.float64)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=axis), rtol=1e-6)
    np.testing.assert_allclose(var, x64.var(axis=axis, ddof=1), rtol=1e-5)


def test_bit_identical_non_contiguous_large():
    x = rng_for("threads-nc").standard_normal((1500, 1500)).astype(np.float32)[:, ::-1].T
    ref = None
    for nt in (1, 2, 3):
        mean, var = fastnorm.moments(x, axis=0, num_threads=nt)
        cur = np.asarray(mean).tobytes() + np.asarray(var).tobytes()
        if ref is None:
            ref = cur
        assert cur == ref
