"""fastnorm.Moments: streaming updates, merging, pickling, and shape errors."""

import copy
import pickle

import numpy as np
import pytest

import fastnorm
from _helpers import noncontig, rng_for

RTOL = 1e-12
ATOL = 1e-12

# (shape of the full data, axis of Moments, axis along which the data is cut into batches)
CASES = [
    ((37, 3, 4), 0, 0),
    ((5, 29), 1, 1),
    ((5, 29), -1, 1),
    ((23, 4, 6), (0, 2), 0),
    ((23, 4, 6), (0, 2), 2),
    ((31, 5), None, 0),
    ((4, 3, 19), -1, 2),
    ((19, 2, 3, 2), (0, -1), 0),
    ((17,), 0, 0),
]
CASE_IDS = ["%s-ax%s-split%d" % c for c in CASES]


def _split_points(n, how, rng):
    if how == "whole":
        return []
    if how == "ones":
        return list(range(1, n))
    if how == "first1":
        return [1]
    if how == "last1":
        return [n - 1]
    if how == "halves":
        return [n // 2]
    if how == "random":
        k = int(rng.integers(1, max(2, n // 2)))
        return sorted(set(int(p) for p in rng.integers(1, n, size=k)))
    raise ValueError(how)


SPLITS = ("whole", "ones", "first1", "last1", "halves", "random")


def _batches(x, split_axis, how, rng):
    return np.split(x, _split_points(x.shape[split_axis], how, rng), axis=split_axis)


def _data(shape, *key):
    return rng_for("acc", shape, *key).standard_normal(shape) * 2.0 + 3.0


def _expected_count(shape, axis):
    if axis is None:
        return int(np.prod(shape))
    axes = (axis,) if isinstance(axis, int) else axis
    return int(np.prod([shape[a] for a in axes]))


def _assert_matches(acc, x, axis, rtol=RTOL, atol=ATOL):
    ref_mean, ref_var0 = fastnorm.moments(x, axis, dtype=np.float64)
    _, ref_var1 = fastnorm.moments(x, axis, ddof=1, dtype=np.float64)
    ref_mean, ref_var0, ref_var1 = map(np.asarray, (ref_mean, ref_var0, ref_var1))
    # the reference itself is right
    np.testing.assert_allclose(ref_mean, np.mean(x, axis=axis), rtol=1e-12, atol=1e-12)

    count = np.asarray(acc.count)
    assert np.all(count == _expected_count(x.shape, axis)), count
    mean = np.asarray(acc.mean)
    assert mean.dtype == np.float64
    assert mean.shape == ref_mean.shape, (mean.shape, ref_mean.shape)
    np.testing.assert_allclose(mean, ref_mean, rtol=rtol, atol=atol, err_msg="mean")
    var0 = np.asarray(acc.var())
    assert var0.dtype == np.float64 and var0.shape == ref_mean.shape
    np.testing.assert_allclose(var0, ref_var0, rtol=rtol, atol=atol, err_msg="var()")
    np.testing.assert_allclose(acc.var(ddof=0), ref_var0, rtol=rtol, atol=atol)
    np.testing.assert_allclose(acc.var(ddof=1), ref_var1, rtol=rtol, atol=atol,
                               err_msg="var(ddof=1)")
    np.testing.assert_allclose(acc.var(1), ref_var1, rtol=rtol, atol=atol)
    std0 = np.asarray(acc.std())
    assert std0.dtype == np.float64 and std0.shape == ref_mean.shape
    np.testing.assert_allclose(std0, np.sqrt(ref_var0), rtol=rtol, atol=atol, err_msg="std()")
    np.testing.assert_allclose(acc.std(ddof=1), np.sqrt(ref_var1), rtol=rtol, atol=atol,
                               err_msg="std(ddof=1)")


def _merged(a, b):
    """``a.merge(b)`` may combine in place (returning a or None) or return a new object."""
    res = a.merge(b)
    return a if res is None else res


@pytest.mark.parametrize("how", SPLITS)
@pytest.mark.parametrize("shape,axis,split_axis", CASES, ids=CASE_IDS)
def test_update_in_batches_equals_one_call(shape, axis, split_axis, how):
    x = _data(shape, axis, split_axis)
    rng = rng_for("split", shape, axis, how)
    acc = fastnorm.Moments(axis)
    for b in _batches(x, split_axis, how, rng):
        ret = acc.update(b)
        assert ret is acc, "update must return the accumulator"
    _assert_matches(acc, x, axis)


def test_update_chained():
    x = _data((12, 3), "chain")
    acc = fastnorm.Moments(0).update(x[:5]).update(x[5:6]).update(x[6:])
    _assert_matches(acc, x, 0)


@pytest.mark.parametrize("shape,axis,split_axis", CASES, ids=CASE_IDS)
def test_merge_accumulators_built_on_different_splits(shape, axis, split_axis):
    x = _data(shape, axis, split_axis, "merge")
    n = x.shape[split_axis]
    cut = max(1, n // 3)
    first, second = np.split(x, [cut], axis=split_axis)
    rng = rng_for("merge-splits", shape, axis)

    def build(part, how):
        acc = fastnorm.Moments(axis)
        for b in _batches(part, split_axis, how, rng):
            acc.update(b)
        return acc

    for how_a, how_b in [("ones", "whole"), ("random", "halves"), ("whole", "ones"),
                         ("first1", "last1")]:
        # merge()
        a, b = build(first, how_a), build(second, how_b)
        _assert_matches(_merged(a, b), x, axis)
        # + leaves its operands alone
        a, b = build(first, how_a), build(second, how_b)
        a_mean, b_mean = np.array(a.mean), np.array(b.mean)
        c = a + b
        _assert_matches(c, x, axis)
        np.testing.assert_array_equal(a.mean, a_mean)
        np.testing.assert_array_equal(b.mean, b_mean)
        assert np.all(np.asarray(a.count) == _expected_count(first.shape, axis))
        assert np.all(np.asarray(b.count) == _expected_count(second.shape, axis))
        # order does not matter (to rounding)
        _assert_matches(build(second, how_b) + build(first, how_a), x, axis)


def test_merge_many_accumulators_tree_and_chain():
    x = _data((40, 6), "many")
    parts = np.split(x, [1, 2, 7, 8, 20, 33], axis=0)
    accs = [fastnorm.Moments(0).update(p) for p in parts]
    chain = accs[0]
    for a in accs[1:]:
        chain = chain + a
    _assert_matches(chain, x, 0)
    accs = [fastnorm.Moments(0).update(p) for p in parts]
    tree = ((accs[0] + accs[1]) + (accs[2] + accs[3])) + ((accs[4] + accs[5]) + accs[6])
    _assert_matches(tree, x, 0)


def test_merge_with_empty_accumulator_is_identity():
    x = _data((9, 4), "empty-merge")
    full = fastnorm.Moments(0).update(x)
    _assert_matches(fastnorm.Moments(0) + full, x, 0)
    _assert_matches(full + fastnorm.Moments(0), x, 0)


def test_float32_batches_accumulate_in_float64():
    x = (_data((50, 7), "f32") * 10 + 1e4).astype(np.float32)
    acc = fastnorm.Moments(0)
    for b in np.split(x, [3, 4, 20], axis=0):
        acc.update(b)
    assert np.asarray(acc.mean).dtype == np.float64
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(acc.mean, x64.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(acc.var(ddof=1), x64.var(axis=0, ddof=1), rtol=1e-6)


def test_non_contiguous_batches():
    x = _data((30, 5, 6), "nc")
    acc = fastnorm.Moments((0, 2))
    for i, b in enumerate(np.split(x, [4, 11, 12], axis=0)):
        kind = ("transposed", "step_last", "reversed", "sliced")[i]
        acc.update(noncontig(b, kind))
    _assert_matches(acc, x, (0, 2))


# --------------------------------------------------------------------------------------
# pickling
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("axis", [0, (0, 2), None, -1])
def test_pickle_round_trip(axis, protocol):
    x = _data((20, 3, 5), "pickle", axis)
    split_axis = 0 if axis in (0, (0, 2), None) else 2
    first, rest = np.split(x, [x.shape[split_axis] // 2], axis=split_axis)
    acc = fastnorm.Moments(axis)
    acc.update(first)
    clone = pickle.loads(pickle.dumps(acc, protocol=protocol))
    assert isinstance(clone, fastnorm.Moments)
    assert clone is not acc
    np.testing.assert_array_equal(np.asarray(clone.count), np.asarray(acc.count))
    np.testing.assert_array_equal(clone.mean, acc.mean)
    np.testing.assert_array_equal(clone.var(), acc.var())
    np.testing.assert_array_equal(clone.var(ddof=1), acc.var(ddof=1))
    # still updatable, independently of the original
    clone.update(rest)
    _assert_matches(clone, x, axis)
    _assert_matches(acc, first, axis)
    # and mergeable with a non-pickled accumulator
    other = fastnorm.Moments(axis).update(rest)
    _assert_matches(pickle.loads(pickle.dumps(acc)) + other, x, axis)


def test_deepcopy_is_independent():
    x = _data((10, 4), "deepcopy")
    acc = fastnorm.Moments(0).update(x[:5])
    dup = copy.deepcopy(acc)
    dup.update(x[5:])
    _assert_matches(dup, x, 0)
    _assert_matches(acc, x[:5], 0)


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,first_shape,bad_shape", [
    (0, (5, 3), (5, 4)),
    (0, (5, 3), (5, 3, 1)),
    (0, (5, 3, 4), (5, 4, 3)),
    (1, (3, 5), (4, 5)),
    ((0, 2), (5, 3, 4), (5, 2, 4)),
    (-1, (2, 3, 7), (3, 3, 7)),
])
def test_update_with_mismatched_non_reduced_dims_raises(axis, first_shape, bad_shape):
    x = _data(first_shape, "mismatch")
    acc = fastnorm.Moments(axis).update(x)
    with pytest.raises(ValueError):
        acc.update(_data(bad_shape, "mismatch-bad"))
    # the failed update did not corrupt the state
    _assert_matches(acc, x, axis)


def test_merge_with_different_axis_raises():
    x = _data((6, 6), "axis-mismatch")
    a = fastnorm.Moments(0).update(x)
    b = fastnorm.Moments(1).update(x)
    with pytest.raises((ValueError, TypeError)):
        a.merge(b)
    with pytest.raises((ValueError, TypeError)):
        a + b
    _assert_matches(a, x, 0)
    _assert_matches(b, x, 1)


def test_merge_with_different_non_reduced_shape_raises():
    a = fastnorm.Moments(0).update(_data((5, 3), "a"))
    b = fastnorm.Moments(0).update(_data((5, 4), "b"))
    with pytest.raises(ValueError):
        a.merge(b)
    with pytest.raises(ValueError):
        a + b
