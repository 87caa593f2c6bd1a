"""Argument validation of fastnorm.moments and fastnorm.Moments."""

import warnings

import numpy as np
import pytest

import fastnorm
from _helpers import BAD_DTYPES, as_bad_dtype, dtype_pattern, rng_for


def _x(shape=(3, 4, 5), dtype=np.float64):
    return (rng_for("vstats", shape).standard_normal(shape) + 1.0).astype(dtype)


# the statistics also take the integer dtypes of API.md (exactly: test_moments_integer.py);
# bool, uint64, complex, object and str are rejected
STATS_BAD_DTYPES = tuple(d for d in BAD_DTYPES if d not in ("int32", "int64", "uint8")) + (
    "uint64",)


def _bad(name):
    return np.abs(_x()).astype(name) if name == "uint64" else as_bad_dtype(_x(), name)


@pytest.mark.parametrize("bad", STATS_BAD_DTYPES)
def test_bad_dtype_raises_type_error_naming_dtype(bad):
    x = _bad(bad)
    with pytest.raises(TypeError, match=dtype_pattern(x)):
        fastnorm.moments(x)
    with pytest.raises(TypeError, match=dtype_pattern(x)):
        fastnorm.moments(x, axis=1)


@pytest.mark.parametrize("bad", ["uint64", "bool", "complex128", "object"])
def test_moments_accumulator_bad_dtype(bad):
    x = _bad(bad)
    acc = fastnorm.Moments(0)
    with pytest.raises(TypeError, match=dtype_pattern(x)):
        acc.update(x)


def test_float16_supported_or_rejected():
    x = _x().astype(np.float16)
    try:
        mean, var = fastnorm.moments(x, axis=0)
    except TypeError as e:
        assert "float16" in str(e)
        return
    assert np.asarray(mean).dtype == np.float16 and np.asarray(var).dtype == np.float16
    x32 = x.astype(np.float64)
    np.testing.assert_allclose(mean.astype(np.float64), x32.mean(axis=0), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(var.astype(np.float64), x32.var(axis=0), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("axis", [3, -4, 10, (0, 3), (-4,), (1, 2, 3)])
def test_axis_out_of_range(axis):
    with pytest.raises((ValueError, IndexError), match="axis"):
        fastnorm.moments(_x(), axis=axis)


def test_axis_out_of_range_accumulator():
    with pytest.raises((ValueError, IndexError), match="axis"):
        fastnorm.Moments(2).update(_x((3, 4)))


@pytest.mark.parametrize("axis", [(0, 0), (1, -2), (0, 1, 0), (-1, 2)])
def test_duplicate_axes(axis):
    with pytest.raises(ValueError, match="ax"):
        fastnorm.moments(_x(), axis=axis)


@pytest.mark.parametrize("nt", [0, -1, -8])
def test_num_threads_non_positive(nt):
    with pytest.raises(ValueError, match="num_threads"):
        fastnorm.moments(_x(), axis=0, num_threads=nt)


@pytest.mark.parametrize("nt", [1.5, "2", True, False, 2.0, [2]])
def test_num_threads_wrong_type(nt):
    with pytest.raises(TypeError, match="num_threads"):
        fastnorm.moments(_x(), axis=0, num_threads=nt)


def test_num_threads_valid_values_accepted():
    x = _x()
    ref = fastnorm.moments(x, axis=(0, 2))
    for nt in (None, 1, 2, 3, 64):
        m, v = fastnorm.moments(x, axis=(0, 2), num_threads=nt)
        np.testing.assert_array_equal(m, ref[0])
        np.testing.assert_array_equal(v, ref[1])


@pytest.mark.parametrize("axis,ddof", [
    (None, -1), (None, 60), (None, 61), (None, 100),
    (0, 3), (0, 4), (0, -2), (1, 4), ((0, 2), 15), ((1, 2), 20), (-1, 5),
])
def test_ddof_beyond_the_count_follows_numpy(axis, ddof):
    # x has shape (3, 4, 5): 60 elements in all. NumPy's var divides by max(count - ddof, 0)
    # (negative ddof is allowed), giving inf/NaN with a RuntimeWarning when that is <= 0.
    x = _x()
    count = x.size if axis is None else np.prod([x.shape[a] for a in np.atleast_1d(axis)])
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        _, var = fastnorm.moments(x, axis=axis, ddof=ddof)
    with warnings.catch_warnings(record=True) as numpys:
        warnings.simplefilter("always")
        want = np.var(x, axis=axis, ddof=ddof)
    np.testing.assert_allclose(var, want, rtol=1e-12)
    np.testing.assert_array_equal(np.isinf(var), np.isinf(want))
    if count - ddof <= 0:
        assert any(issubclass(w.category, RuntimeWarning) for w in numpys)
        assert any(issubclass(w.category, RuntimeWarning) and "Degrees of freedom" in
                   str(w.message) for w in ours), [str(w.message) for w in ours]


@pytest.mark.parametrize("axis,ddof", [(None, 59), (0, 2), ((0, 2), 14), (-1, 4)])
def test_ddof_largest_valid(axis, ddof):
    x = _x()
    _, var = fastnorm.moments(x, axis=axis, ddof=ddof)
    np.testing.assert_allclose(var, np.var(x, axis=axis, ddof=ddof), rtol=1e-12)


def test_empty_reduction_is_nan_like_numpy():
    # zero reduced elements: NumPy's mean and var are NaN (with RuntimeWarnings)
    with pytest.warns(RuntimeWarning):
        mean, var = fastnorm.moments(np.zeros((0, 3)), axis=0)
    assert mean.shape == var.shape == (3,)
    assert np.isnan(mean).all() and np.isnan(var).all()


