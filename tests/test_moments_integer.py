"""moments and Moments.update on integer data: exact integer sums (API.md, "Integer data in
the statistics").

The reference is exact rational arithmetic on Python integers: mean = S1 / n, M2 = (n*S2 -
S1**2) / n with S1 = sum(x), S2 = sum(x*x). fastnorm promises the mean and M2 rounded once
to float64 (so the mean is bit-identical to the correctly rounded exact mean) and the
variance M2 / (n - ddof) as for float data."""
import math
from fractions import Fraction

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _dispatch
from _helpers import rng_for

INT_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64")


def _random_ints(rng, shape, dtype, spread="full"):
    info = np.iinfo(dtype)
    if spread == "full":
        lo, hi = info.min, info.max
    else:                              # a narrow band far from zero: cancellation territory
        hi = info.max
        lo = max(info.min, hi - 7)
    return rng.integers(lo, hi, size=shape, dtype=dtype, endpoint=True)


def _exact(x, axis):
    """(mean, M2) float64 arrays: the exact values rounded once, with Python integers."""
    axes = tuple(range(x.ndim)) if axis is None else (
        (axis,) if isinstance(axis, int) else tuple(axis))
    axes = tuple(a % x.ndim for a in axes)
    obj = x.astype(object)
    n = math.prod(x.shape[a] for a in axes)
    s1 = np.sum(obj, axis=axes)
    s2 = np.sum(obj * obj, axis=axes)
    s1, s2 = np.asarray(s1, dtype=object), np.asarray(s2, dtype=object)
    mean = np.array([Fraction(int(v), n) for v in s1.reshape(-1)], dtype=object)
    m2 = np.array([Fraction(int(n * b - a * a), n) for a, b in
                   zip(s1.reshape(-1).tolist(), s2.reshape(-1).tolist())], dtype=object)
    as_float = np.vectorize(float, otypes=[np.float64])
    return (as_float(mean).reshape(s1.shape), as_float(m2).reshape(s1.shape), n)


def _check(x, axis, ddof=0, **kw):
    mean, var = fn.moments(x, axis, ddof=ddof, **kw)
    want_mean, want_m2, n = _exact(x, axis)
    assert mean.dtype == np.float64 and var.dtype == np.float64
    np.testing.assert_array_equal(mean, want_mean)         # correctly rounded, bit for bit
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(var, want_m2 / (n - ddof))


# axis choices covering every plan of the statistics engine on a (4, 5, 6) array:
# R (None), KR (2, (1, 2)), RK (0, (0, 1)), KRK (1), RKR ((0, 2)), nothing reduced (())
AXES = [None, 0, 1, 2, -1, (0, 1), (1, 2), (0, 2), ()]


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("axis", AXES, ids=str)
def test_moments_equal_exact_integer_arithmetic(dtype, axis):
    x = _random_ints(rng_for("int", dtype, str(axis)), (4, 5, 6), dtype)
    _check(x, axis)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_narrow_band_far_from_zero_and_extremes(dtype):
    """Values at the top of the range (cancellation in s2 - s1^2/n, the widest sums) and the
    type's minimum and maximum themselves."""
    rng = rng_for("band", dtype)
    x = _random_ints(rng, (3, 2000), dtype, "narrow")
    _check(x, None)
    _check(x, 1)
    info = np.iinfo(dtype)
    ext = np.array([info.min, info.max] * 50 + [info.min], dtype=dtype)
    _check(ext, None)
    _check(ext.reshape(1, -1), 1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32"])
def test_large_groups_and_many_groups(dtype):
    """One group larger than a kernel task (lane sums folded across tasks and threads), and
    many small groups (per-pixel statistics over a batch, the vectorized conversion)."""
    rng = rng_for("large", dtype)
    x = _random_ints(rng, (300_001,), dtype)
    _check(x, None)
    _check(x[:300_000].reshape(100_000, 3), 0)       # 3 columns of 100k rows
    _check(x[:300_000].reshape(3, 100_000), 1)
    y = _random_ints(rng, (8, 32, 32, 3), dtype)
    _check(y, 0)                                      # per-pixel over the batch
    _check(y, (0, 1, 2))                              # per channel of an NHWC batch


def test_uint16_sums_past_2_53_use_exact_integers():
    """uint16 at the top of its range: S2 of a few million values passes 2**53 (no longer
    exact in float64); the result is still the exact value rounded once."""
    x = np.full(3_000_001, 65535, np.uint16)
    x[::7] = 65534
    mean, var = fn.moments(x)
    want_mean, want_m2, n = _exact(x, None)
    assert mean == want_mean and var == want_m2 / n


def test_threads_and_layouts_agree_exactly():
    x = _random_ints(rng_for("thr"), (16, 64, 64, 3), "uint8")
    ref = fn.moments(x, (0, 1, 2), num_threads=1)
    for nt in (2, 3):
        got = fn.moments(x, (0, 1, 2), num_threads=nt)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    # the same data as an NCHW view of NHWC memory (channels-last: no copy), as a
    # non-contiguous crop and as a big-endian copy
    nchw = x.transpose(0, 3, 1, 2)
    got = fn.moments(nchw, (0, 2, 3))
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    _check(x[:, 3:50:2, ::-1], (0, 1, 2))
    _check(x.astype(">u2"), (0, 1, 2))


@pytest.mark.parametrize("ddof", [0, 1, 2.5])
def test_ddof_keepdims_and_dtype(ddof):
    x = _random_ints(rng_for("ddof", ddof), (5, 7), "int16")
    _check(x, 1, ddof=ddof)
    mean, var = fn.moments(x, 1, ddof=ddof, keepdims=True, dtype=np.float32)
    assert mean.shape == (5, 1) and mean.dtype == np.float32 and var.dtype == np.float32
    np.testing.assert_allclose(var[:, 0], x.astype(np.float64).var(axis=1, ddof=ddof),
                               rtol=1e-6)


def test_empty_integer_input_like_numpy():
    x = np.zeros((0, 3), np.uint8)
    with pytest.warns(RuntimeWarning):
        mean, var = fn.moments(x, 0)
    assert mean.shape == (3,) and np.all(np.isnan(mean))


def test_dataset_constants_streaming_over_uint8_batches():
    """A dataset's per-channel constants as one streaming loop over uint8 NHWC batches; the
    same as moments over everything at once, and as the exact values."""
    rng = rng_for("dataset")
    batches = [rng.integers(0, 256, size=(n, 24, 24, 3), dtype=np.uint8) for n in (5, 8, 3)]
    acc = fn.Moments(axis=(0, 1, 2))
    for b in batches:
        acc.update(b)
    everything = np.concatenate(batches)
    want_mean, want_m2, n = _exact(everything, (0, 1, 2))
    assert acc.count == n
    np.testing.assert_allclose(acc.mean, want_mean, rtol=1e-15)
    np.testing.assert_allclose(acc.var(), want_m2 / n, rtol=1e-14)
    # merged from accumulators of separate workers
    a, b = fn.Moments((0, 1, 2)).update(batches[0]), fn.Moments((0, 1, 2)).update(batches[1])
    b.update(batches[2])
    merged = a + b
    np.testing.assert_allclose(merged.mean, want_mean, rtol=1e-15)
    np.testing.assert_allclose(merged.var(), want_m2 / n, rtol=1e-14)
    # integer and float batches mix
    mixed = fn.Moments((0, 1, 2)).update(batches[0]).update(batches[1].astype(np.float32))
    mixed.update(batches[2].astype(np.int32))
    np.testing.assert_allclose(mixed.mean, want_mean, rtol=1e-12)


def test_int64_far_from_zero_streams_without_losing_digits():
    """int64 values near 2**62 with unit spread: the exact mean is kept as shift + remainder,
    so a Chan merge of two batches keeps the variance."""
    rng = rng_for("i64")
    base = 2 ** 62
    a = (base + rng.integers(0, 4, size=1000)).astype(np.int64)
    b = (base + rng.integers(0, 4, size=1000)).astype(np.int64)
    acc = fn.Moments().update(a).update(b)
    small = np.concatenate([a, b]) - base
    np.testing.assert_allclose(acc.var(), small.var(), rtol=1e-12)


def test_bool_rejected():
    with pytest.raises(TypeError, match="bool"):
        fn.moments(np.ones(4, bool))
    with pytest.raises(TypeError, match="bool"):
        fn.Moments().update(np.ones(4, bool))


@pytest.mark.parametrize("variant", _dispatch.available_variants())
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_every_kernel_variant_is_exact(variant, dtype):
    x = _random_ints(rng_for("variant", dtype), (6, 70, 5), dtype)
    with _dispatch.using(variant):
        for axis in (None, 1, (0, 1), (0, 2)):
            _check(x, axis)
