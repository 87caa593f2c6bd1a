"""Property-based tests: random shapes, strides, dtypes and flags against float64 NumPy.

For every op, hypothesis draws a shape (rank 2-5, small dims including 1), a memory layout
of x (C-contiguous, Fortran, a transposed copy, step slices with negative steps), a dtype
(float32/float64), the affine parameters (absent, other dtype, non-contiguous views), the
mode flags (training / use_input_stats / running statistics / return_stats / eps) and the
output mode (new array, out= buffer, in place), then checks the result against the float64
reference formulas of tests/_helpers.py, the updated running statistics, the returned
statistics, and that nothing handed in was modified except what the call may write.
Invalid combinations that the contract rejects (too few values per channel in training)
must raise ValueError and leave every array unchanged.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastnorm
from _helpers import (assert_close_to_ref, ref_batch_norm, ref_channel_layer_norm,
                      ref_group_norm, ref_instance_norm, ref_layer_norm, ref_rms_norm)

SETTINGS = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

DTYPES = st.sampled_from([np.float32, np.float64])
LAYOUTS = ["contiguous", "fortran", "transposed", "strided"]


PARALLEL_MIN = 32768      # elements from which the kernels run in parallel


@st.composite
def shapes(draw, min_rank=2, max_rank=5, max_size=3000):
    """Small dims (1 included); one example in eight has one dim stretched so that the
    array is large enough for the parallel kernels (2 threads by default)."""
    rank = draw(st.integers(min_rank, max_rank))
    dims = draw(st.lists(st.integers(1, 7), min_size=rank, max_size=rank))
    assume(math.prod(dims) <= max_size)
    if draw(st.integers(0, 7)) == 0:
        i = draw(st.integers(0, rank - 1))
        rest = math.prod(dims) // dims[i]
        dims[i] = -(-PARALLEL_MIN // rest) + draw(st.integers(0, 100))
    return tuple(dims)


@st.composite
def arrays(draw, shape, dtype):
    """An array of `shape` with random values and a random memory layout."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    loc = draw(st.sampled_from([0.0, 1.0, -3.0, 100.0]))
    scale = draw(st.sampled_from([0.5, 1.0, 4.0]))
    layout = draw(st.sampled_from(LAYOUTS))
    vals = (rng.standard_normal(shape) * scale + loc).astype(dtype)
    if layout == "contiguous":
        return vals
    if layout == "fortran":
        return np.asfortranarray(vals)
    if layout == "transposed":
        perm = draw(st.permutations(range(len(shape))))
        base = np.ascontiguousarray(vals.transpose(perm))      # memory in perm order
        return base.transpose(np.argsort(perm))
    steps = draw(st.lists(st.sampled_from([1, 2, -1, -3]), min_size=len(shape),
                          max_size=len(shape)))
    big = np.full(tuple(n * abs(s) for n, s in zip(shape, steps)), np.nan, dtype)
    view = big[tuple(slice(None, None, s) for s in steps)]   # NaN around the view
    assert view.shape == shape
    view[...] = vals
    return view


@st.composite
def params(draw, shape, dtype, present=None):
    """An affine parameter of `shape`: None, or values in x's dtype or the other float
    dtype, C-contiguous or a strided view."""
    if present is None:
        present = draw(st.booleans())
    if not present:
        return None
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    pdtype = draw(st.sampled_from([dtype, dtype, np.float64, np.float32]))
    vals = rng.uniform(0.5, 1.5, shape).astype(pdtype)
    if draw(st.booleans()) and len(shape) >= 1:
        big = np.full(shape[:-1] + (2 * shape[-1],), np.nan, pdtype)
        big[..., ::2] = vals
        return big[..., ::2]
    return vals


def out_mode(draw, x):
    """(x to pass, out to pass): new array, separate out buffer, or in place."""
    mode = draw(st.sampled_from(["new", "out", "inplace"]))
    if mode == "new":
        return x, None
    if mode == "out":
        return x, np.full(x.shape, np.nan, x.dtype)
    xc = np.ascontiguousarray(x).copy()
    return xc, xc


def snapshot(*arrays):
    return [(a, a.copy()) for a in arrays if isinstance(a, np.ndarray)]


def assert_unchanged(snap, what="an argument"):
    for a, c in snap:
        np.testing.assert_array_equal(a, c, err_msg="%s was modified" % what)


def check_result(y, out, x, ref, dtype, what="y"):
    assert y.shape == x.shape and y.dtype == np.dtype(dtype)
    if out is not None:
        assert y is out
    elif x.ndim >= 3 and not x.flags.c_contiguous and np.moveaxis(x, 1, -1).flags.c_contiguous:
        # channels-last x: kept where that layout is native for the op (API v2; LayerNorm
        # over spatial dims only takes the C-order copy)
        assert np.moveaxis(y, 1, -1).flags.c_contiguous or y.flags.c_contiguous
    else:
        assert y.flags.c_contiguous
    assert_close_to_ref(y, ref, dtype, what=what)


EPS = st.sampled_from([1e-5, 1e-3, 0.1, 1.0])


def draw_input(draw, **shape_kw):
    """(dtype, shape, x0): the input of one example."""
    dtype = draw(DTYPES)
    shape = draw(shapes(**shape_kw))
    return dtype, shape, draw(arrays(shape, dtype))


def draw_channel_input(draw, **shape_kw):
    """(dtype, shape, x0, C, weight, bias): the input of one example of a per-channel
    normalization."""
    dtype, shape, x0 = draw_input(draw, **shape_kw)
    C = shape[1]
    return dtype, shape, x0, C, draw(params((C,), dtype)), draw(params((C,), dtype))


def running_stats(C, dtype, present):
    """(running_mean, running_var) of C channels, or (None, None)."""
    if not present:
        return None, None
    return (np.random.default_rng(1).normal(0, 1, C).astype(dtype),
            np.random.default_rng(2).uniform(0.5, 2, C).astype(dtype))


def assert_rejected(call, *arrays):
    """call() raises ValueError and leaves every array handed in unchanged."""
    snap = snapshot(*arrays)
    with pytest.raises(ValueError):
        call()
    assert_unchanged(snap)


def check_running(rm, rv, erm, erv):
    np.testing.assert_allclose(rm, erm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, erv, rtol=1e-5, atol=1e-6)


def check_call(call, x, x0, out, params, ref, dtype, stats=None):
    """call() leaves x (unless it is out) and params unchanged; its y (split from the
    returned statistics, checked too, when stats = (return_stats, shape, mean, rstd))
    matches the float64 reference ref."""
    snap = snapshot(*(a for a in (x,) + params if a is not out))
    res = call()
    assert_unchanged(snap)
    y = res if stats is None else split_stats(res, *stats, dtype)
    check_result(y, out, x0, ref, dtype)


def check_running_norm(fn, ref_fn, x, x0, out, rm, rv, w, b, batch_stats, momentum, eps,
                       dtype, rejected):
    """batch_norm / instance_norm (fn, its float64 reference ref_fn) with the mode flag
    batch_stats (training / use_input_stats): a rejected call raises ValueError and
    changes nothing; otherwise y matches the reference, the arguments it may not write
    are unchanged and the running statistics (if any) are updated as the reference's
    (batch_stats) or left alone."""
    def call():
        return fn(x, rm, rv, w, b, batch_stats, momentum, eps, out=out)
    if rejected:
        assert_rejected(call, x, out, rm, rv, w, b)
        return
    ref, erm, erv = ref_fn(x, rm, rv, w, b, batch_stats, momentum, eps)
    snap = snapshot(*(a for a in (x, w, b) if a is not out)) + (
        [] if batch_stats else snapshot(rm, rv))
    y = call()
    check_result(y, out, x0, ref, dtype)
    assert_unchanged(snap)
    if batch_stats and rm is not None:
        check_running(rm, rv, erm, erv)


def split_stats(res, return_stats, stats_shape, mean, rstd, dtype):
    """y of a call made with return_stats, its mean and rstd checked against the reference
    when they were asked for."""
    if not return_stats:
        return res
    y, m, r = res
    assert m.shape == r.shape == stats_shape
    assert m.dtype == r.dtype == np.dtype(dtype)
    assert_close_to_ref(m, mean, dtype, what="mean")
    np.testing.assert_allclose(r, rstd, rtol=1e-5 if dtype == np.float32 else 1e-9)
    return y


# --------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_batch_norm_property(data):
    draw = data.draw
    dtype, shape, x0, C, w, b = draw_channel_input(draw)
    mode = draw(st.sampled_from(["train", "train_nostats", "eval", "eval_nostats"]))
    training = mode.startswith("train")
    stats = not mode.endswith("nostats")
    rdtype = draw(st.sampled_from([dtype, np.float64]))
    rm, rv = running_stats(C, rdtype, stats)
    momentum = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    eps = draw(EPS)
    x, out = out_mode(data.draw, x0)
    count = x.size // C
    uses_batch = training or not stats
    rejected = uses_batch and count < 2 and training
    if not rejected:
        assume(not (uses_batch and count < 2))
    check_running_norm(fastnorm.batch_norm, ref_batch_norm, x, x0, out, rm, rv, w, b,
                       training, momentum, eps, dtype, rejected)


@SETTINGS
@given(data=st.data())
def test_instance_norm_property(data):
    draw = data.draw
    dtype, shape, x0, C, w, b = draw_channel_input(draw, min_rank=3)
    mode = draw(st.sampled_from(["input", "input_stats", "running"]))
    use_input_stats = mode != "running"
    stats = mode != "input"
    rm, rv = running_stats(C, dtype, stats)
    momentum = draw(st.sampled_from([0.0, 0.1, 1.0]))
    eps = draw(EPS)
    x, out = out_mode(data.draw, x0)
    inner = math.prod(shape[2:])
    check_running_norm(fastnorm.instance_norm, ref_instance_norm, x, x0, out, rm, rv, w, b,
                       use_input_stats, momentum, eps, dtype, use_input_stats and inner < 2)


@SETTINGS
@given(data=st.data())
def test_group_norm_property(data):
    draw = data.draw
    dtype, shape, x0, C, w, b = draw_channel_input(draw)
    G = draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0]))
    eps = draw(EPS)
    return_stats = draw(st.booleans())
    x, out = out_mode(data.draw, x0)
    ref, mean, rstd = ref_group_norm(x, G, w, b, eps)
    check_call(lambda: fastnorm.group_norm(x, G, w, b, eps, out=out, return_stats=return_stats),
               x, x0, out, (w, b), ref, dtype, (return_stats, (shape[0], G), mean, rstd))


@st.composite
def normalized_shape_arg(draw, shape):
    k = draw(st.integers(1, len(shape)))
    nshape = shape[len(shape) - k:]
    form = draw(st.sampled_from(["tuple", "list", "int"] if k == 1 else ["tuple", "list"]))
    arg = {"tuple": tuple(nshape), "list": list(nshape),
           "int": nshape[0] if k == 1 else None}[form]
    return k, tuple(nshape), arg


def draw_trailing_input(draw):
    """(dtype, shape, x0, k, nshape, normalized_shape argument, weight): the input of one
    example of a normalization over the trailing k dims."""
    dtype, shape, x0 = draw_input(draw)
    k, nshape, arg = draw(normalized_shape_arg(shape))
    return dtype, shape, x0, k, nshape, arg, draw(params(nshape, dtype))


@SETTINGS
@given(data=st.data())
def test_layer_norm_property(data):
    draw = data.draw
    dtype, shape, x0, k, nshape, arg, w = draw_trailing_input(draw)
    b = draw(params(nshape, dtype))
    eps = draw(EPS)
    return_stats = draw(st.booleans())
    x, out = out_mode(data.draw, x0)
    ref, mean, rstd = ref_layer_norm(x, nshape, w, b, eps)
    stats_shape = shape[:len(shape) - k] + (1,) * k
    check_call(lambda: fastnorm.layer_norm(x, arg, w, b, eps, out=out, return_stats=return_stats),
               x, x0, out, (w, b), ref, dtype, (return_stats, stats_shape, mean, rstd))


@SETTINGS
@given(data=st.data())
def test_rms_norm_property(data):
    draw = data.draw
    dtype, shape, x0, k, nshape, arg, w = draw_trailing_input(draw)
    eps = draw(st.sampled_from([None, 1e-6, 1e-3, 1.0]))
    x, out = out_mode(data.draw, x0)
    ref = ref_rms_norm(x, nshape, w, eps)
    check_call(lambda: fastnorm.rms_norm(x, arg, w, eps, out=out), x, x0, out, (w,), ref, dtype)


@SETTINGS
@given(data=st.data())
def test_channel_layer_norm_property(data):
    draw = data.draw
    dtype, shape, x0, C, w, b = draw_channel_input(draw)
    eps = draw(EPS)
    x, out = out_mode(data.draw, x0)
    ref = ref_channel_layer_norm(x, w, b, eps)
    check_call(lambda: fastnorm.channel_layer_norm(x, w, b, eps, out=out), x, x0, out, (w, b),
               ref, dtype)


@SETTINGS
@given(data=st.data())
def test_moments_property(data):
    draw = data.draw
    dtype = draw(DTYPES)
    shape = draw(shapes(min_rank=1))
    x = draw(arrays(shape, dtype))
    ndim = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        axis, axes = None, tuple(range(ndim))
    elif kind == "int":
        a = draw(st.integers(-ndim, ndim - 1))
        axis, axes = a, (a % ndim,)
    else:
        axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
    count = math.prod(shape[a] for a in axes)
    ddof = draw(st.sampled_from([0, 1] if count > 1 else [0]))
    keepdims = draw(st.booleans())
    out_dtype = draw(st.sampled_from([None, np.float64]))
    snap = snapshot(x)
    mean, var = fastnorm.moments(x, axis=axis, ddof=ddof, keepdims=keepdims, dtype=out_dtype)
    assert_unchanged(snap, "x")
    x64 = x.astype(np.float64)
    emean = x64.mean(axis=axes, keepdims=keepdims)
    evar = x64.var(axis=axes, ddof=ddof, keepdims=keepdims)
    rdt = np.dtype(out_dtype or dtype)
    assert np.asarray(mean).dtype == rdt and np.asarray(var).dtype == rdt
    assert np.shape(mean) == np.shape(emean) and np.shape(var) == np.shape(evar)
    tol = 1e-9 if rdt == np.float64 and np.dtype(dtype) == np.float64 else 1e-5
    np.testing.assert_allclose(mean, emean, rtol=tol, atol=tol * max(1.0, np.abs(x64).max()))
    np.testing.assert_allclose(var, evar, rtol=tol * 10, atol=tol * max(1.0, evar.max()))

    # the streaming accumulator over a split of the first axis agrees
    if shape[0] >= 2 and axis is not None and 0 in axes:
        cut = draw(st.integers(1, shape[0] - 1))
        acc = fastnorm.Moments(axis).update(x[:cut]) + fastnorm.Moments(axis).update(x[cut:])
        np.testing.assert_allclose(acc.mean, x64.mean(axis=axes), rtol=1e-9,
                                   atol=1e-9 * max(1.0, np.abs(x64).max()))
        np.testing.assert_allclose(acc.var(ddof), x64.var(axis=axes, ddof=ddof), rtol=1e-6,
                                   atol=1e-9 * max(1.0, evar.max()))
