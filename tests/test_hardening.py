"""Regression tests for defects found in a user review of fastnorm.

One section per defect. Expected values come from NumPy, from float64 / long-double
formulas written here or in fastnorm._reference (the test suite's independent float64
oracle), or from PyTorch; never from a stored fastnorm result. Where a requirement allows
two outcomes (an error raised before anything is written, or a result), both are checked
explicitly. Tests marked "guard" pin a rule that holds today next to the cases that do not.

 1. float64 accuracy of the variance for large |mean|/std (moments, Moments, running var)
 2. infinities in the data (moments, Moments, running statistics)
 3. argument rules applied on the fast path too (layer_norm, rms_norm, batch_norm eval)
 4. read-only arrays: x read-only, out read-only, out the same memory as a read-only x
 5. errors under np.errstate raised before anything is written (or not at all)
 6. ddof with NumPy's meaning (ddof >= count, negative ddof, empty reductions)
 7. empty groups give NaN statistics
 8. non-native byte order accepted like the native dtypes
 9. merging an empty Moments, and axes compared after normalization
"""

import math
import re
import warnings

import numpy as np
import pytest

import fastnorm as fn
from _helpers import (noncontig, ref_batch_norm, ref_channel_layer_norm, ref_group_norm,
                      ref_instance_norm, ref_layer_norm, ref_rms_norm, rng_for, unchanged,
                      valid_call)
from fastnorm._reference import _reduced_axes, ref_var_exact

OPS = ["batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
       "channel_layer_norm"]
FN = {op: getattr(fn, op) for op in OPS}
REF = {"batch_norm": ref_batch_norm, "instance_norm": ref_instance_norm,
       "group_norm": ref_group_norm, "layer_norm": ref_layer_norm, "rms_norm": ref_rms_norm,
       "channel_layer_norm": ref_channel_layer_norm}
ALL_FLOATS = [np.float16, np.float32, np.float64]
SHAPE = (3, 4, 5, 6)


def _copy_kw(kw):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


def _ref_y(op, x, kw):
    """The float64 reference output of fastnorm.<op>(x, **kw)."""
    res = REF[op](x, **kw)
    return res[0] if isinstance(res, tuple) else res


def _y_tol(dtype):
    return {np.dtype(np.float16): 2e-2, np.dtype(np.float32): 1e-4,
            np.dtype(np.float64): 1e-9}[np.dtype(dtype)]


def _quiet_numpy():
    """Context for NumPy reference computations that may divide by zero or see inf."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", RuntimeWarning)
    err = np.errstate(all="ignore")
    err.__enter__()

    class _Done:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            err.__exit__(*exc)
            ctx.__exit__(*exc)
            return False
    return _Done()


# ======================================================================================
# 1. accuracy of the variance for ill-conditioned float64 data
# ======================================================================================
#
# Reference: the variance of the very same input values, two-pass in long double (x87
# extended, 64-bit mantissa) with the mean refined once; where long double is no wider
# than float64 the sums are exactly rounded with math.fsum instead. The requirement: the
# relative error of fastnorm's variance is within 10x of NumPy's (np.var in float64 on the
# same values), with a floor of 1e-15 for cases where NumPy happens to be nearly exact.

ACC_FLOOR = 1e-15


def rel_err(got, ref):
    got = np.asarray(got, dtype=np.longdouble)
    ref = np.asarray(ref, dtype=np.longdouble)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.all(ref > 0), "reference variance must be positive for a relative error"
    return float(np.max(np.abs(got - ref) / ref))


def _ill_data(rng, shape, kind):
    """'f64': float64 N(1.7e9, 1); 'f32': float32 N(1e4, 0.01) (|mean|/std = 1.7e9, 1e6)."""
    if kind == "f64":
        return rng.standard_normal(shape) + 1.7e9
    return (rng.standard_normal(shape) * 0.01 + 1e4).astype(np.float32)


def _check_acc(what, got, ref, numpy_result):
    err = rel_err(got, ref)
    np_err = rel_err(numpy_result, ref)
    bound = max(10 * np_err, ACC_FLOOR)
    assert err <= bound, (
        "%s: fastnorm variance relative error %.3g vs the long-double reference exceeds "
        "max(10 x NumPy's %.3g, %.0e) = %.3g (%.3gx the bound)"
        % (what, err, np_err, ACC_FLOOR, bound, err / bound))


# (shape, axis): short contiguous runs (RKR with runs of 2-3), long rows, columns, KRK,
# a layout with more alternations (copied), negative axes
MOMENTS_ACC_CASES = [
    ((50, 7, 3), (0, 2)),
    ((64, 16, 2), (0, 2)),
    ((64, 16, 2), (-3, -1)),
    ((30000,), None),
    ((5, 4000), 1),
    ((37, 200), 1),              # guard: within the bound today
    ((200, 37), 0),              # guard: within the bound today
    ((3000, 2), 0),
    ((4000, 5), 0),
    ((6, 500, 5), 1),
    ((20, 6, 30, 4), (0, 2)),    # guard: within the bound today (reduced axes moved last)
]


@pytest.mark.parametrize("kind", ["f64", "f32"])
@pytest.mark.parametrize("shape,axis", MOMENTS_ACC_CASES,
                         ids=["%s-ax%s" % (s, a) for s, a in MOMENTS_ACC_CASES])
def test_moments_variance_accuracy_large_mean(shape, axis, kind):
    x = _ill_data(rng_for("acc-moments", shape, axis, kind), shape, kind)
    ref = ref_var_exact(x, axis)
    got = fn.moments(x, axis) if kind == "f64" else fn.moments(x, axis, dtype=np.float64)
    assert got[1].dtype == np.float64
    _check_acc("moments(%s data %s, axis=%s)" % (kind, shape, axis), got[1], ref,
               np.var(x.astype(np.float64), axis=axis))


@pytest.mark.parametrize("ddof", [0, 1])
def test_moments_variance_accuracy_ddof(ddof):
    x = _ill_data(rng_for("acc-ddof"), (50, 7, 3), "f64")
    ref = ref_var_exact(x, (0, 2), ddof=ddof)
    _check_acc("moments(ddof=%d)" % ddof, fn.moments(x, (0, 2), ddof=ddof)[1], ref,
               np.var(x, axis=(0, 2), ddof=ddof))


# (batch shape, number of batches, axis)
ACCUM_ACC_CASES = [
    ((4, 7), 50, 0),
    ((100,), 50, None),
    ((3, 7, 3), 50, (0, 2)),
    ((2, 5), 100, 0),
]


@pytest.mark.parametrize("kind", ["f64", "f32"])
@pytest.mark.parametrize("bshape,nbatch,axis", ACCUM_ACC_CASES,
                         ids=["%s-x%d-ax%s" % c for c in ACCUM_ACC_CASES])
def test_accumulator_variance_accuracy_large_mean(bshape, nbatch, axis, kind):
    rng = rng_for("acc-accum", bshape, nbatch, axis, kind)
    batches = [_ill_data(rng, bshape, kind) for _ in range(nbatch)]
    acc = fn.Moments(axis=axis)
    for b in batches:
        acc.update(b)
    cat_axis = 0
    allx = np.concatenate(batches, axis=cat_axis)
    ref = ref_var_exact(allx, axis)
    _check_acc("Moments(axis=%s) over %d %s batches of %s" % (axis, nbatch, kind, bshape),
               acc.var(), ref, np.var(allx.astype(np.float64), axis=axis))


@pytest.mark.parametrize("kind", ["f64", "f32"])
@pytest.mark.parametrize("shape", [(64, 16, 2), (8, 16, 4, 4),
                                   (256, 16)])          # (256, 16): guard, accurate today
def test_batch_norm_running_var_accuracy_large_mean(shape, kind):
    """momentum=1.0 makes running_var the unbiased batch variance itself. float32 data
    keeps float64 running statistics (parameters of another float dtype are cast)."""
    x = _ill_data(rng_for("acc-bn", shape, kind), shape, kind)
    c = shape[1]
    axes = (0,) + tuple(range(2, len(shape)))
    rm, rv = np.zeros(c), np.ones(c)
    fn.batch_norm(x, rm, rv, training=True, momentum=1.0)
    ref = ref_var_exact(x, axes, ddof=1)
    _check_acc("batch_norm(%s data %s) running_var" % (kind, shape), rv, ref,
               np.var(x.astype(np.float64), axis=axes, ddof=1))


@pytest.mark.parametrize("shape", [(2, 4, 5000), (3, 2, 70, 70), (4, 4, 30000),
                                   (64, 4, 3)])          # (64, 4, 3): guard, accurate today
def test_instance_norm_running_var_accuracy_large_mean(shape):
    """running_var (momentum=1.0) = batch mean of the per-instance unbiased variances."""
    x = _ill_data(rng_for("acc-in", shape), shape, "f64")
    c = shape[1]
    spatial = tuple(range(2, len(shape)))
    rm, rv = np.zeros(c), np.ones(c)
    fn.instance_norm(x, rm, rv, use_input_stats=True, momentum=1.0)
    ref = ref_var_exact(x, spatial, ddof=1).mean(axis=0)
    _check_acc("instance_norm(%s) running_var" % (shape,), rv, ref,
               np.var(x, axis=spatial, ddof=1).mean(axis=0))


RUNNING32_CASES = [("batch_norm", (8, 16, 4, 4)), ("batch_norm", (2, 16, 64)),
                   ("batch_norm", (4, 3, 100)), ("instance_norm", (8, 16, 4, 4)),
                   ("instance_norm", (2, 4, 5000))]


@pytest.mark.parametrize("op,shape", RUNNING32_CASES,
                         ids=["%s-%s" % c for c in RUNNING32_CASES])
def test_running_var_float32_data_float64_stats_keeps_precision(op, shape):
    """float32 x with float64 running statistics, well-conditioned data (mean 1, std 1):
    the statistics are computed in float64 (README), so the float64 running_var must be as
    accurate as NumPy's float64 variance of the same values (within 10x); it carries float32
    rounding (about 1e-8) for these shapes (found by scripts/stats_accuracy.py)."""
    x = (1.0 + rng_for("acc-run32", op, shape).standard_normal(shape)).astype(np.float32)
    c = shape[1]
    spatial = tuple(range(2, len(shape)))
    rm, rv = np.zeros(c), np.ones(c)
    if op == "batch_norm":
        fn.batch_norm(x, rm, rv, training=True, momentum=1.0)
        axes = (0,) + spatial
        ref = ref_var_exact(x, axes, ddof=1)
        numpy_result = np.var(x.astype(np.float64), axis=axes, ddof=1)
    else:
        fn.instance_norm(x, rm, rv, use_input_stats=True, momentum=1.0)
        ref = ref_var_exact(x, spatial, ddof=1).mean(axis=0)
        numpy_result = np.var(x.astype(np.float64), axis=spatial, ddof=1).mean(axis=0)
    _check_acc("%s(float32 %s, float64 running stats) running_var" % (op, shape), rv, ref,
               numpy_result)


def test_batch_norm_running_var_accuracy_torch_example():
    """The review's example: (64, 16, 2) + 1.7e9 in float64; torch float64 is also far
    better than fastnorm there (about 1e-12)."""
    torch = pytest.importorskip("torch")
    x = _ill_data(np.random.default_rng(0), (64, 16, 2), "f64")
    ref = ref_var_exact(x, (0, 2), ddof=1)
    rm, rv = np.zeros(16), np.ones(16)
    fn.batch_norm(x, rm, rv, training=True, momentum=1.0)
    trm, trv = torch.zeros(16, dtype=torch.float64), torch.ones(16, dtype=torch.float64)
    torch.nn.functional.batch_norm(torch.from_numpy(x), trm, trv, training=True, momentum=1.0)
    err, t_err = rel_err(rv, ref), rel_err(trv.numpy(), ref)
    np_err = rel_err(np.var(x, axis=(0, 2), ddof=1), ref)
    assert err <= max(10 * np_err, ACC_FLOOR), (
        "batch_norm running_var relative error %.3g; NumPy %.3g, torch float64 %.3g"
        % (err, np_err, t_err))


# ======================================================================================
# 2. infinities in the data
# ======================================================================================

def _kinds(a):
    a = np.asarray(a, dtype=np.float64)
    return np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], ["nan", "+inf", "-inf"],
                     "finite")


def assert_like(got, exp, dtype, what):
    """Same shape; the same NaN / +inf / -inf / finite pattern; finite values close."""
    got = np.asarray(got)
    exp = np.asarray(exp)
    assert got.shape == exp.shape, "%s: shape %s, expected %s" % (what, got.shape, exp.shape)
    kg, ke = _kinds(got), _kinds(exp)
    bad = kg != ke
    if bad.any():
        idx = np.argwhere(bad)[:6].tolist() if got.ndim else "scalar"
        raise AssertionError(
            "%s: NaN/inf pattern differs at %s: fastnorm %s, expected %s (fastnorm values %s, "
            "expected %s)" % (what, idx, kg[bad][:6].tolist(), ke[bad][:6].tolist(),
                              got[bad][:6].tolist(), exp[bad][:6].tolist()))
    fin = ke == "finite"
    # NumPy's own sums along a strided axis are not pairwise: ~1e-14 off on 50000 float64
    # values, so finite values are compared within a summation's error, not to the ulp
    eps = max(float(np.finfo(dtype).eps), 1e-14)
    np.testing.assert_allclose(got[fin].astype(np.float64), exp[fin].astype(np.float64),
                               rtol=8 * eps, atol=8 * eps, err_msg=what)


# "+inf,-inf", "+inf,nan" and "nan" (all-NaN results) are guards in 1-D: right today
INF_PATTERNS = ["+inf", "-inf", "+inf,-inf", "+inf,nan", "nan", "+inf,+inf"]


def _put_pattern(v, pattern, rng_pos=None):
    """Write the non-finite values of `pattern` into the 1-D view v: the first one near the
    start, the second near the end (another chunk for long v), a NaN in the middle."""
    n = v.size
    first, last = 1 % n, max(n - 2, 0)
    if pattern == "+inf":
        v[first] = np.inf
    elif pattern == "-inf":
        v[last] = -np.inf
    elif pattern == "+inf,-inf":
        v[first], v[last] = np.inf, -np.inf
    elif pattern == "+inf,nan":
        v[first], v[n // 2] = np.inf, np.nan
    elif pattern == "nan":
        v[n // 2] = np.nan
    elif pattern == "+inf,+inf":
        v[first], v[last] = np.inf, np.inf
    elif pattern != "finite":
        raise ValueError(pattern)


def _np_moments(x, axis=None):
    with _quiet_numpy():
        return (np.mean(x, axis=axis, dtype=np.float64), np.var(x, axis=axis, dtype=np.float64))


INF_SIZES = [20, 3000, 2048 * 3 + 17, 70001]


@pytest.mark.parametrize("pattern", INF_PATTERNS)
@pytest.mark.parametrize("n", INF_SIZES)
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_moments_infinite_values_like_numpy(dtype, n, pattern):
    """The review's case: arange(20) float32 with x[1] = inf gave (nan, nan), NumPy
    (inf, nan); float64 gave (inf, inf); with 3000 elements a NaN mean."""
    x = rng_for("inf", n, pattern).standard_normal(n).astype(dtype)
    _put_pattern(x, pattern)
    em, ev = _np_moments(x)
    what = "moments(%s[%d] with %s)" % (np.dtype(dtype).name, n, pattern)
    m, v = fn.moments(x)
    assert_like(m, em.astype(dtype), dtype, what + " mean")
    assert_like(v, ev.astype(dtype), dtype, what + " var")
    m, v = fn.moments(x, dtype=np.float64)
    assert_like(m, em, dtype, what + " mean (dtype=float64)")
    assert_like(v, ev, dtype, what + " var (dtype=float64)")


def test_moments_infinite_review_example():
    x = np.arange(20, dtype=np.float32)
    x[1] = np.inf
    m, v = fn.moments(x)
    with _quiet_numpy():
        em, ev = np.mean(x), np.var(x)
    assert_like(m, em, np.float32, "moments(arange(20) with inf) mean")
    assert_like(v, ev, np.float32, "moments(arange(20) with inf) var")


GROUP_PATTERNS = ["+inf", "-inf", "+inf,-inf", "+inf,nan", "nan", "finite", "+inf,+inf"]


def _grouped_data(rng, n, dtype, layout):
    """x of a layout whose reduction over `axis` has one group per GROUP_PATTERNS entry
    (each group of n values carrying that pattern); returns (x, axis)."""
    g = rng.standard_normal((len(GROUP_PATTERNS), n)).astype(dtype)
    for row, p in zip(g, GROUP_PATTERNS):
        _put_pattern(row, p)
    if layout == "rows":
        return np.ascontiguousarray(g), 1
    if layout == "columns":
        return np.ascontiguousarray(g.T), 0
    if layout == "channels":      # (N, C, L) reduced over (0, 2): BatchNorm-like
        nb = 5
        assert n % nb == 0
        x = g.reshape(len(GROUP_PATTERNS), nb, n // nb).transpose(1, 0, 2)
        return np.ascontiguousarray(x), (0, 2)
    raise ValueError(layout)


@pytest.mark.parametrize("n", [20, 3000, 2048 * 3 + 11, 50000])
@pytest.mark.parametrize("layout", ["rows", "columns", "channels"])
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_moments_infinite_values_axis_like_numpy(dtype, layout, n):
    x, axis = _grouped_data(rng_for("inf-axis", n, layout), n, dtype, layout)
    em, ev = _np_moments(x, axis)
    what = "moments(%s %s %s, axis=%s), groups %s" % (np.dtype(dtype).name, layout, x.shape,
                                                      axis, GROUP_PATTERNS)
    m, v = fn.moments(x, axis, dtype=np.float64)
    assert_like(m, em, dtype, what + " mean")
    assert_like(v, ev, dtype, what + " var")


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_accumulator_infinite_values_like_numpy(dtype):
    rng = rng_for("inf-accum", np.dtype(dtype).name)
    x, _ = _grouped_data(rng, 3000, dtype, "columns")          # (3000, 7), axis 0
    batches = np.array_split(x, [700, 1400, 2900])
    acc = fn.Moments(axis=0)
    for b in batches:
        acc.update(b)
    em, ev = _np_moments(x, 0)
    assert_like(acc.mean, em, dtype, "Moments.mean with %s" % GROUP_PATTERNS)
    assert_like(acc.var(), ev, dtype, "Moments.var with %s" % GROUP_PATTERNS)
    half = fn.Moments(axis=0).update(x[:1500]) + fn.Moments(axis=0).update(x[1500:])
    assert_like(half.mean, em, dtype, "merged Moments.mean with %s" % GROUP_PATTERNS)
    assert_like(half.var(), ev, dtype, "merged Moments.var with %s" % GROUP_PATTERNS)


def _channel_data(dtype, shape, key):
    """(N, C, L) or (N, C) data, channel c carrying GROUP_PATTERNS[c] over its values."""
    rng = rng_for("inf-bn", shape, key)
    c = shape[1]
    assert c == len(GROUP_PATTERNS)
    x = rng.standard_normal(shape).astype(dtype)
    per_channel = np.moveaxis(x, 1, 0).reshape(c, -1).copy()
    for row, p in zip(per_channel, GROUP_PATTERNS):
        _put_pattern(row, p)
    rest = tuple(s for d, s in enumerate(shape) if d != 1)
    return np.ascontiguousarray(np.moveaxis(per_channel.reshape((c,) + rest), 0, 1))


def _torch_running(op, x, momentum):
    torch = pytest.importorskip("torch")
    c = x.shape[1]
    tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[x.dtype]
    rm, rv = torch.zeros(c, dtype=tdt), torch.ones(c, dtype=tdt)
    xt = torch.from_numpy(x.copy())
    with torch.no_grad():
        if op == "batch_norm":
            torch.nn.functional.batch_norm(xt, rm, rv, training=True, momentum=momentum)
        else:
            torch.nn.functional.instance_norm(xt, rm, rv, use_input_stats=True,
                                              momentum=momentum)
    return rm.numpy(), rv.numpy()


RUNNING_INF_CASES = [("batch_norm", (4, 7, 300)), ("batch_norm", (4, 7, 2048 * 2 + 3)),
                     ("batch_norm", (3000, 7)), ("instance_norm", (3, 7, 300)),
                     ("instance_norm", (2, 7, 5000))]


@pytest.mark.parametrize("op,shape", RUNNING_INF_CASES,
                         ids=["%s-%s" % c for c in RUNNING_INF_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_running_stats_infinite_values_like_torch(op, shape, dtype):
    """The review: batch_norm(training=True) set running_mean to NaN where torch gives inf."""
    x = _channel_data(dtype, shape, op)
    c = shape[1]
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    with _quiet_numpy():
        FN[op](x, rm, rv, momentum=0.1, **({"training": True} if op == "batch_norm" else {}))
    trm, trv = _torch_running(op, x, 0.1)
    what = "%s(%s %s) channels %s" % (op, np.dtype(dtype).name, shape, GROUP_PATTERNS)
    assert_like(rm, trm, dtype, what + " running_mean vs torch")
    assert_like(rv, trv, dtype, what + " running_var vs torch")


@pytest.mark.parametrize("op,shape", RUNNING_INF_CASES,
                         ids=["%s-%s" % c for c in RUNNING_INF_CASES])
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_running_stats_infinite_values_like_reference(op, shape, dtype):
    """The same against the float64 NumPy reference of the PyTorch update (float16 too:
    x and running statistics float16)."""
    x = _channel_data(dtype, shape, op)
    c = shape[1]
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    with _quiet_numpy():
        if op == "batch_norm":
            fn.batch_norm(x, rm, rv, training=True, momentum=0.1)
            _, erm, erv = ref_batch_norm(x, np.zeros(c), np.ones(c), training=True,
                                         momentum=0.1)
        else:
            fn.instance_norm(x, rm, rv, use_input_stats=True, momentum=0.1)
            _, erm, erv = ref_instance_norm(x, np.zeros(c), np.ones(c), momentum=0.1)
    what = "%s(%s %s) channels %s" % (op, np.dtype(dtype).name, shape, GROUP_PATTERNS)
    assert_like(rm, erm.astype(dtype), dtype, what + " running_mean")
    assert_like(rv, erv.astype(dtype), dtype, what + " running_var")


# ======================================================================================
# 3. every argument rule on every path
# ======================================================================================
#
# The fast path (layer_norm / rms_norm over the last dim, batch_norm eval, C-contiguous
# float32/float64 x, plain arguments) must reject exactly what the general path rejects,
# with the same exception type. The general path is reached with the same values in a
# non-contiguous view, and with float16 x. Most rules already hold on both paths (guards);
# return_stats with falsy non-bool values (None, 0, "", ...) is accepted on the fast path.

X3 = (3, 4, 6)          # layer_norm / rms_norm over 6; batch_norm with C = 4


def _call_fast_candidate(op, x, kw, out_mode):
    kw = dict(kw)
    if out_mode == "inplace":
        kw["out"] = x
    if op in ("layer_norm", "rms_norm"):
        ns = kw.pop("normalized_shape", X3[-1])
        return FN[op](x, ns, **kw)
    base = dict(running_mean=np.zeros(X3[1], x.dtype), running_var=np.ones(X3[1], x.dtype))
    base.update(kw)
    return FN[op](x, **base)


RULE_CASES = [
    # layer_norm: return_stats must be a bool
    ("layer_norm", "return_stats", None),
    ("layer_norm", "return_stats", 0),
    ("layer_norm", "return_stats", 0.0),
    ("layer_norm", "return_stats", ""),
    ("layer_norm", "return_stats", []),
    ("layer_norm", "return_stats", np.int64(0)),
    ("layer_norm", "return_stats", 1),               # guard
    ("layer_norm", "return_stats", "yes"),           # guard
    ("layer_norm", "eps", np.float32(-1.0)),         # guard
    ("layer_norm", "eps", -1.0),                     # guard
    ("layer_norm", "eps", float("nan")),             # guard
    ("layer_norm", "eps", float("inf")),             # guard
    ("layer_norm", "eps", "1e-5"),                   # guard
    ("layer_norm", "eps", None),                     # guard
    ("layer_norm", "num_threads", 0),                # guard
    ("layer_norm", "num_threads", -1),               # guard
    ("layer_norm", "num_threads", True),             # guard
    ("layer_norm", "num_threads", 2.5),              # guard
    ("layer_norm", "normalized_shape", True),        # guard
    ("layer_norm", "normalized_shape", (6.0,)),      # guard
    ("layer_norm", "normalized_shape", 6.0),         # guard
    ("layer_norm", "normalized_shape", ()),          # guard
    ("layer_norm", "normalized_shape", (5,)),        # guard
    ("layer_norm", "weight", "ones5"),               # guard
    ("layer_norm", "weight", "int6"),                # guard
    ("layer_norm", "bias", "ones5"),                 # guard
    ("layer_norm", "out", "wrong_dtype"),            # guard
    ("layer_norm", "out", "wrong_shape"),            # guard
    # rms_norm
    ("rms_norm", "eps", np.float32(-1.0)),           # guard
    ("rms_norm", "eps", -1.0),                       # guard
    ("rms_norm", "eps", "1e-5"),                     # guard
    ("rms_norm", "num_threads", 0),                  # guard
    ("rms_norm", "num_threads", True),               # guard
    ("rms_norm", "num_threads", 2.5),                # guard
    ("rms_norm", "normalized_shape", True),          # guard
    ("rms_norm", "normalized_shape", (6.0,)),        # guard
    ("rms_norm", "weight", "ones5"),                 # guard
    ("rms_norm", "out", "wrong_dtype"),              # guard
    # batch_norm in eval mode
    ("batch_norm", "training", None),                # guard
    ("batch_norm", "training", 0),                   # guard
    ("batch_norm", "training", "yes"),               # guard
    ("batch_norm", "momentum", 2.0),                 # guard
    ("batch_norm", "momentum", -0.5),                # guard
    ("batch_norm", "momentum", np.float32(2.0)),     # guard
    ("batch_norm", "momentum", "0.1"),               # guard
    ("batch_norm", "eps", np.float32(-1.0)),         # guard
    ("batch_norm", "eps", -1.0),                     # guard
    ("batch_norm", "eps", float("nan")),             # guard
    ("batch_norm", "num_threads", 0),                # guard
    ("batch_norm", "num_threads", True),             # guard
    ("batch_norm", "num_threads", 2.5),              # guard
    ("batch_norm", "running_mean", "ones5"),         # guard
    ("batch_norm", "running_var", "int4"),           # guard
    ("batch_norm", "running_var", None),             # guard
    ("batch_norm", "weight", "ones5"),               # guard
    ("batch_norm", "bias", "int4"),                  # guard
    ("batch_norm", "out", "wrong_dtype"),            # guard
]


def _bad_value(token, x):
    if isinstance(token, str):
        if token == "ones5":
            return np.ones(5, x.dtype)
        if token == "int6":
            return np.ones(6, np.int64)
        if token == "int4":
            return np.ones(4, np.int64)
        if token == "wrong_dtype":
            return np.empty(x.shape, np.float64 if x.dtype != np.float64 else np.float32)
        if token == "wrong_shape":
            return np.empty(x.shape[:-1] + (x.shape[-1] + 1,), x.dtype)
    return token


def _outcome(call):
    try:
        call()
    except Exception as exc:           # noqa: BLE001 - the type is what is compared
        return type(exc)
    return None


@pytest.mark.parametrize("out_mode", ["none", "inplace"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op,arg,value", RULE_CASES,
                         ids=["%s-%s=%r" % c for c in RULE_CASES])
def test_fast_path_applies_every_rule(op, arg, value, dtype, out_mode):
    if arg == "out" and out_mode == "inplace":
        pytest.skip("out is the argument under test")
    x = rng_for("rules", op, arg).standard_normal(X3).astype(dtype)
    bad = {arg: _bad_value(value, x)}
    # the general path: same values, non-contiguous; and float16
    general = {}
    for label, xg in (("non-contiguous", noncontig(x, "step_last")),
                      ("float16", x.astype(np.float16))):
        kw = dict(bad)
        if arg == "out" and isinstance(value, str):
            kw["out"] = _bad_value(value, xg)
        general[label] = _outcome(lambda: _call_fast_candidate(op, xg, kw, "none"))
    assert general["non-contiguous"] is not None, (
        "case list: the general path accepts %s(%s=%r), so it is no rule" % (op, arg, value))
    assert general["non-contiguous"] in (TypeError, ValueError)
    xf = x.copy()
    with unchanged(xf if out_mode == "none" else None):
        snap = xf.copy()
        fast = _outcome(lambda: _call_fast_candidate(op, xf, bad, out_mode))
    if fast is not None:
        np.testing.assert_array_equal(xf, snap, err_msg="a rejected call modified x")
    assert fast is general["non-contiguous"], (
        "%s(%s=%r) on C-contiguous %s x (out=%s) %s, but on the general path raises %s "
        "(float16 x: %s)" % (op, arg, value, np.dtype(dtype).name,
                             "x" if out_mode == "inplace" else "None",
                             "is accepted" if fast is None else "raises %s" % fast.__name__,
                             general["non-contiguous"].__name__,
                             general["float16"] and general["float16"].__name__))


def test_layer_norm_return_stats_none_review_example():
    with pytest.raises(TypeError, match="return_stats"):
        fn.layer_norm(np.ones((2, 4), np.float32), 4, return_stats=None)


# ======================================================================================
# 4. read-only arrays
# ======================================================================================

NAMES_X_OR_OUT = re.compile(r"(?<![A-Za-z_])(out|x)(?![A-Za-z_])")


def _readonly_case(op, dtype, key):
    x, kw = valid_call(op, dtype, SHAPE, "readonly", op, key)
    return x, kw


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_same_memory_readonly_x_and_writable_out(op, dtype):
    """x a read-only view of buf, out=buf: the same memory and strides, which fastnorm treats
    as in place. Accepted outcomes: the call works (buf holds the reference result of the
    original values and is returned), or it raises an error naming `out` or `x` and buf
    is unchanged. The review: Cython's "buffer source array is read-only". (float16: guard,
    its private float32 copy makes it work today.)"""
    buf, kw = _readonly_case(op, dtype, "same-memory")
    orig = buf.copy()
    ro = buf.view()
    ro.flags.writeable = False
    kw_ref = _copy_kw(kw)
    try:
        res = FN[op](ro, **kw, out=buf)
    except Exception as exc:          # noqa: BLE001 - the message is checked
        assert NAMES_X_OR_OUT.search(str(exc)), (
            "%s: the error %r names neither `out` nor `x`" % (op, exc))
        np.testing.assert_array_equal(buf, orig, err_msg="buf was written before the error")
        return
    assert res is buf, "%s returned a new array, not out" % op
    ref = _ref_y(op, orig, kw_ref)
    np.testing.assert_allclose(buf.astype(np.float64), ref, rtol=_y_tol(dtype),
                               atol=_y_tol(dtype), err_msg="%s: buf holds a wrong result" % op)


def test_same_memory_readonly_review_example():
    buf = np.arange(8, dtype=np.float32).reshape(2, 4)
    orig = buf.copy()
    ro = buf.view()
    ro.flags.writeable = False
    try:
        res = fn.layer_norm(ro, 4, out=buf)
    except Exception as exc:          # noqa: BLE001
        assert NAMES_X_OR_OUT.search(str(exc)), "error %r names neither out nor x" % exc
        np.testing.assert_array_equal(buf, orig)
        return
    assert res is buf
    np.testing.assert_allclose(buf, ref_layer_norm(orig, 4)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_readonly_x_out_none_works(op, dtype):
    """guard: x is never written with out=None, so a read-only x must work."""
    x, kw = _readonly_case(op, dtype, "out-none")
    kw_ref = _copy_kw(kw)
    x.flags.writeable = False
    with unchanged(x):
        y = FN[op](x, **kw)
    assert y.dtype == x.dtype and y.shape == x.shape and y.flags.writeable
    np.testing.assert_allclose(y.astype(np.float64), _ref_y(op, x, kw_ref), rtol=_y_tol(dtype),
                               atol=_y_tol(dtype))


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_readonly_out_raises_naming_out(op, dtype):
    """guard: a read-only out is a ValueError naming `out`; nothing written."""
    x, kw = _readonly_case(op, dtype, "ro-out")
    out = np.full(x.shape, 7.25, dtype=x.dtype)
    out.flags.writeable = False
    with unchanged(x, out, *[v for v in kw.values() if isinstance(v, np.ndarray)]):
        with pytest.raises(ValueError, match=r"(?<![A-Za-z_])out(?![A-Za-z_])"):
            FN[op](x, **kw, out=out)


@pytest.mark.parametrize("op", OPS)
def test_readonly_x_in_place_raises_naming_x(op):
    """guard: out=x with a read-only x is an error naming x (or out); nothing written."""
    x, kw = _readonly_case(op, np.float32, "ro-inplace")
    x.flags.writeable = False
    with unchanged(x, *[v for v in kw.values() if isinstance(v, np.ndarray)]):
        with pytest.raises(ValueError, match=NAMES_X_OR_OUT):
            FN[op](x, **kw, out=x)


# ======================================================================================
# 5. no error after a write under np.errstate
# ======================================================================================
#
# Accepted outcomes under np.errstate(all="raise") (or over="raise"): no error, and the
# results equal those of the same call without errstate (e.g. rstd inf); or an error raised
# before anything is written (x, out and the running statistics bit-for-bit unchanged).

def _run_plain(call, fresh):
    """The results of call(*fresh()) without errstate, warnings silenced."""
    args = fresh()
    with _quiet_numpy():
        res = call(*args)
    return res, args


def _same(got, exp, what):
    got, exp = np.asarray(got), np.asarray(exp)
    assert got.dtype == exp.dtype and got.shape == exp.shape, what
    np.testing.assert_array_equal(got, exp, err_msg=what)


def check_errstate(call, fresh, written, errstate, what):
    """call(*args) with args = fresh() under errstate; `written(args)` names the arrays
    the call may write (in order); fresh() gives independent copies each time."""
    exp_res, exp_args = _run_plain(call, fresh)
    args = fresh()
    watched = written(args)
    snaps = [a.copy() for a in watched]
    try:
        with np.errstate(**errstate):
            res = call(*args)
    except Exception as exc:          # noqa: BLE001 - then nothing may have been written
        for i, (a, s) in enumerate(zip(watched, snaps)):
            np.testing.assert_array_equal(
                a, s, err_msg="%s raised %r after writing argument #%d" % (what, exc, i))
        return "raised"
    exp_tuple = exp_res if isinstance(exp_res, tuple) else (exp_res,)
    res_tuple = res if isinstance(res, tuple) else (res,)
    assert len(res_tuple) == len(exp_tuple)
    for i, (g, e) in enumerate(zip(res_tuple, exp_tuple)):
        _same(g, e, "%s: result #%d differs from the call without errstate" % (what, i))
    for i, (g, e) in enumerate(zip(written(args), written(exp_args))):
        _same(g, e, "%s: argument #%d differs from the call without errstate" % (what, i))
    return "ok"


def _const_rows(dtype):
    return np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]], dtype=dtype)


def _with_out(x, out_mode):
    """(x, out) for an out mode: x itself, a filled buffer, or None."""
    return x, (x if out_mode == "inplace" else
               np.full(x.shape, 7.25, x.dtype) if out_mode == "buffer" else None)


def _not_none(args):
    return [a for a in args if a is not None]


# out_mode "none": guard (the error comes after the kernel, but no caller array is written)
@pytest.mark.parametrize("out_mode", ["inplace", "buffer", "none"])
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_layer_norm_stats_eps0_constant_row_errstate(dtype, out_mode):
    """Constant row, eps=0: rstd = 1/0. The review: FloatingPointError after out=x was
    overwritten."""
    def fresh():
        return _with_out(_const_rows(dtype), out_mode)

    def call(x, out):
        return fn.layer_norm(x, 4, eps=0.0, return_stats=True, out=out)

    # the reference of the no-error outcome: rstd inf for the constant row, like torch
    res, _ = _run_plain(call, fresh)
    with _quiet_numpy():
        _, emean, erstd = ref_layer_norm(_const_rows(dtype), 4, eps=0.0)
    assert_like(res[2], erstd.astype(dtype), dtype, "layer_norm rstd without errstate")
    assert_like(res[1], emean.astype(dtype), dtype, "layer_norm mean without errstate")
    check_errstate(call, fresh, _not_none, dict(all="raise"),
                   "layer_norm(%s, eps=0, return_stats=True, out=%s)"
                   % (np.dtype(dtype).name, out_mode))


# out_mode "none": guard, as above
@pytest.mark.parametrize("out_mode", ["inplace", "buffer", "none"])
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_group_norm_stats_eps0_constant_group_errstate(dtype, out_mode):
    def fresh():
        x = rng_for("gn-errstate").standard_normal((2, 4, 3)).astype(dtype)
        x[0, :2] = 1.0                 # sample 0, group 0 constant
        return _with_out(x, out_mode)

    def call(x, out):
        return fn.group_norm(x, 2, eps=0.0, return_stats=True, out=out)

    check_errstate(call, fresh, _not_none, dict(all="raise"),
                   "group_norm(%s, eps=0, return_stats=True, out=%s)"
                   % (np.dtype(dtype).name, out_mode))


@pytest.mark.parametrize("dtype,eps", [(np.float16, 1e-12), (np.float32, 1e-80)],
                         ids=["f16", "f32"])
def test_layer_norm_stats_rstd_overflow_errstate(dtype, eps):
    """Constant rows and a tiny eps: rstd = 1/sqrt(eps) overflows the dtype of x (inf)."""
    def fresh():
        x = np.ones((2, 4), dtype)
        return (x,)

    def call(x):
        return fn.layer_norm(x, 4, eps=eps, return_stats=True, out=x)
    res, _ = _run_plain(call, fresh)
    with _quiet_numpy():
        erstd = (1.0 / np.sqrt(np.zeros((2, 1)) + eps)).astype(dtype)
    assert_like(res[2], erstd, dtype, "rstd without errstate")
    check_errstate(call, fresh, lambda a: [a[0]], dict(all="raise"),
                   "layer_norm(%s, eps=%g, return_stats=True, out=x)"
                   % (np.dtype(dtype).name, eps))


RUNNING_OVERFLOW = [
    # (op, x dtype, running-stat dtype, offset, scale)
    ("batch_norm", np.float32, np.float16, 6e4, 300.0),
    ("instance_norm", np.float32, np.float16, 6e4, 300.0),
    ("batch_norm", np.float64, np.float32, 0.0, 1e20),
    ("instance_norm", np.float64, np.float32, 0.0, 1e20),
]


@pytest.mark.parametrize("errstate", [dict(over="raise"), dict(all="raise")],
                         ids=["over", "all"])
@pytest.mark.parametrize("out_mode", ["inplace", "none"])
@pytest.mark.parametrize("op,xdt,sdt,offset,scale", RUNNING_OVERFLOW,
                         ids=["%s-x%s-stats%s" % (c[0], np.dtype(c[1]).name,
                                                  np.dtype(c[2]).name)
                              for c in RUNNING_OVERFLOW])
def test_running_stats_overflow_errstate(op, xdt, sdt, offset, scale, out_mode, errstate):
    """The running statistics of a narrower dtype overflow (running_var -> inf). The review:
    x and running_mean written, running_var set to inf, then FloatingPointError."""
    c = 3

    def fresh():
        x = (rng_for("overflow", op).standard_normal((4, c, 5)) * scale + offset).astype(xdt)
        return x, np.full(c, 6e4 if sdt == np.float16 else 0.0, sdt), np.full(c, 6e4, sdt)

    def call(x, rm, rv):
        kw = {"training": True} if op == "batch_norm" else {"use_input_stats": True}
        return FN[op](x, rm, rv, momentum=0.5, out=x if out_mode == "inplace" else None,
                      **kw)

    def written(args):
        return list(args)
    res, exp_args = _run_plain(call, fresh)
    assert np.isinf(exp_args[2]).any(), "case set-up: running_var is meant to overflow"
    check_errstate(call, fresh, _not_none, errstate, "%s(x %s, running stats %s, out=%s)"
                   % (op, np.dtype(xdt).name, np.dtype(sdt).name, out_mode))


def test_batch_norm_eval_zero_var_errstate_guard():
    """guard: eval with var + eps == 0 (float16 x: general path) either raises before
    writing or gives the no-errstate result."""
    def fresh():
        x = rng_for("bn-eval-zero").standard_normal((2, 3, 4)).astype(np.float16)
        return x, np.zeros(3, np.float32), np.array([0.0, 1.0, 1.0], np.float32)

    def call(x, rm, rv):
        return fn.batch_norm(x, rm, rv, eps=0.0, out=x)
    check_errstate(call, fresh, lambda a: list(a), dict(all="raise"),
                   "batch_norm eval, var + eps == 0")


# ======================================================================================
# 6. ddof with NumPy's meaning
# ======================================================================================

def _numpy_with_warnings(f):
    """(result, whether NumPy emitted a RuntimeWarning)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with np.errstate(all="warn"):
            res = f()
    return res, any(issubclass(w.category, RuntimeWarning) for w in rec)


def _fastnorm_with_warnings(f):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = f()
    return res, any(issubclass(w.category, RuntimeWarning) for w in rec)


DDOF_DATA = {"1,2,3": np.array([1.0, 2.0, 3.0]), "const": np.ones(3),
             "cols": np.array([[1.0, 1.0], [2.0, 1.0], [4.0, 1.0]])}


@pytest.mark.parametrize("ddof", [3, 4, 3.0, 2.5, -1, -2.5, 10])      # 2.5: guard
@pytest.mark.parametrize("data", sorted(DDOF_DATA))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_moments_ddof_like_numpy(data, ddof, dtype):
    """fn.moments(np.ones(3), ddof=3) and negative ddof raised; NumPy returns nan/inf (with
    a RuntimeWarning) and m2 / (n - ddof) for negative ddof."""
    x = DDOF_DATA[data].astype(dtype)
    axis = 0
    (em, ev), np_warned = _numpy_with_warnings(
        lambda: (np.mean(x, axis=axis), np.var(x, axis=axis, ddof=ddof)))
    (m, v), fn_warned = _fastnorm_with_warnings(lambda: fn.moments(x, axis, ddof=ddof))
    what = "moments(%s %s, ddof=%r)" % (np.dtype(dtype).name, data, ddof)
    assert_like(m, np.asarray(em, dtype), dtype, what + " mean")
    assert_like(v, np.asarray(ev, dtype), dtype, what + " var")
    if np_warned:
        assert fn_warned, "%s: NumPy warns (RuntimeWarning), fastnorm does not" % what


def test_moments_ddof_equal_count_warns():
    with pytest.warns(RuntimeWarning):
        m, v = fn.moments(np.array([1.0, 2.0, 3.0]), ddof=3)
    assert np.isposinf(v), "NumPy gives +inf (2 / 0), got %r" % (v,)


EMPTY_CASES = [((0, 3), 0), ((0,), None), ((2, 0, 3), 1), ((0, 4), None), ((3, 0), (0, 1))]


@pytest.mark.parametrize("ddof", [0, 1, -1])
@pytest.mark.parametrize("shape,axis", EMPTY_CASES, ids=["%s-ax%s" % c for c in EMPTY_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_moments_empty_reduction_like_numpy(shape, axis, ddof, dtype):
    """fn.moments(np.zeros((0, 3)), axis=0) raised a ddof error (no ddof given); NumPy:
    NaN with a RuntimeWarning."""
    x = np.zeros(shape, dtype)
    (em, ev), np_warned = _numpy_with_warnings(
        lambda: (np.mean(x, axis=axis), np.var(x, axis=axis, ddof=ddof)))
    (m, v), fn_warned = _fastnorm_with_warnings(lambda: fn.moments(x, axis, ddof=ddof))
    what = "moments(zeros%s, axis=%s, ddof=%d)" % (shape, axis, ddof)
    assert np.asarray(m).dtype == dtype and np.asarray(v).dtype == dtype, what
    assert_like(m, np.asarray(em, dtype), dtype, what + " mean")
    assert_like(v, np.asarray(ev, dtype), dtype, what + " var")
    if np_warned:
        assert fn_warned, "%s: NumPy warns (RuntimeWarning), fastnorm does not" % what


def test_moments_empty_keepdims_like_numpy():
    x = np.zeros((0, 3))
    with _quiet_numpy():
        ev = np.var(x, axis=0, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m, v = fn.moments(x, axis=0, keepdims=True)
    assert_like(v, ev, np.float64, "moments(zeros((0, 3)), axis=0, keepdims=True) var")


ACC_DATA = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 5.0], [4.0, 1.0, 3.0]])


@pytest.mark.parametrize("ddof", [3, 4, -1, 2.5])                     # 2.5: guard
def test_accumulator_var_ddof_like_numpy(ddof):
    """Moments.var(ddof=count) raised; NumPy gives inf (m2 > 0) / nan (constant)."""
    acc = fn.Moments(axis=0).update(ACC_DATA[:2]).update(ACC_DATA[2:])
    assert acc.count == 3
    ev, np_warned = _numpy_with_warnings(lambda: np.var(ACC_DATA, axis=0, ddof=ddof))
    v, fn_warned = _fastnorm_with_warnings(lambda: acc.var(ddof=ddof))
    assert_like(v, ev, np.float64, "Moments.var(ddof=%r)" % ddof)
    es, _ = _numpy_with_warnings(lambda: np.std(ACC_DATA, axis=0, ddof=ddof))
    s, _ = _fastnorm_with_warnings(lambda: acc.std(ddof=ddof))
    assert_like(s, es, np.float64, "Moments.std(ddof=%r)" % ddof)
    if np_warned:
        assert fn_warned, "Moments.var(ddof=%r): NumPy warns, fastnorm does not" % ddof


@pytest.mark.parametrize("ddof", ["1", None, object()], ids=["str", "None", "object"])
def test_ddof_non_numeric_raises_type_error(ddof):
    """guard: a non-numeric ddof stays a TypeError (NumPy raises TypeError too)."""
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(TypeError):
        np.var(x, ddof=ddof)
    with pytest.raises(TypeError):
        fn.moments(x, ddof=ddof)
    with pytest.raises(TypeError):
        fn.Moments().update(x).var(ddof=ddof)


# ======================================================================================
# 7. empty groups: NaN statistics
# ======================================================================================
#
# rstd: NaN, as torch.native_layer_norm / native_group_norm. mean: NaN, as np.mean of an
# empty slice (torch reports 0 there; the requirement is NaN for both).

LN_EMPTY = [((2, 0), 0), ((2, 3, 0), (3, 0)), ((4, 0), (0,))]


@pytest.mark.parametrize("shape,nshape", LN_EMPTY, ids=["%s-%s" % c for c in LN_EMPTY])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_layer_norm_empty_rows_nan_stats(shape, nshape, dtype):
    """The review: rstd was 316.2 = 1/sqrt(eps) for an empty row."""
    x = np.zeros(shape, dtype)
    y, mean, rstd = fn.layer_norm(x, nshape, return_stats=True)
    k = 1 if isinstance(nshape, int) else len(nshape)
    stat_shape = shape[:-k] + (1,) * k
    assert y.shape == shape and mean.shape == stat_shape and rstd.shape == stat_shape
    assert mean.dtype == dtype and rstd.dtype == dtype
    with _quiet_numpy():
        emean = np.mean(x, axis=tuple(range(len(shape) - k, len(shape))), keepdims=True)
    assert_like(mean, emean.astype(dtype), dtype, "layer_norm mean of empty rows (NumPy)")
    assert np.isnan(rstd).all(), "layer_norm rstd of empty rows: %r, expected NaN" % (rstd,)


@pytest.mark.parametrize("shape", [(2, 4, 0), (2, 4, 0, 5), (3, 6, 2, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_group_norm_empty_groups_nan_stats(shape, dtype):
    x = np.zeros(shape, dtype)
    y, mean, rstd = fn.group_norm(x, 2, return_stats=True)
    assert y.shape == shape and mean.shape == (shape[0], 2) and rstd.shape == (shape[0], 2)
    with _quiet_numpy():
        emean = np.mean(x.reshape(shape[0], 2, -1), axis=2)
    assert_like(mean, emean.astype(dtype), dtype, "group_norm mean of empty groups (NumPy)")
    assert np.isnan(rstd).all(), "group_norm rstd of empty groups: %r, expected NaN" % (rstd,)


def test_empty_groups_rstd_like_torch():
    torch = pytest.importorskip("torch")
    x = np.zeros((2, 3, 0), np.float32)
    _, _, rstd = fn.layer_norm(x, (3, 0), return_stats=True)
    _, _, trstd = torch.native_layer_norm(torch.from_numpy(x), [3, 0], None, None, 1e-5)
    assert_like(rstd, trstd.numpy(), np.float32, "layer_norm rstd of empty rows vs torch")
    xg = np.zeros((2, 4, 0), np.float32)
    _, _, grstd = fn.group_norm(xg, 2, return_stats=True)
    _, _, tgrstd = torch.native_group_norm(torch.from_numpy(xg), None, None, 2, 4, 0, 2, 1e-5)
    assert_like(grstd, tgrstd.numpy(), np.float32, "group_norm rstd of empty groups vs torch")


# ======================================================================================
# 8. non-native byte order
# ======================================================================================
#
# Arrays of a byte-swapped float dtype ('>f4' on little-endian machines; data loaded from
# big-endian .npy / HDF5 files) behave like the native dtype. Assumption: a result
# allocated for a byte-swapped x (out=None) has the native-endian equivalent dtype.

def swapped(a):
    """a in the non-native byte order of its dtype (same values)."""
    return a.astype(a.dtype.newbyteorder("S"))


def _native(dt):
    return np.dtype(dt).newbyteorder("=")


def _assert_same_values(got, exp, what):
    got, exp = np.asarray(got), np.asarray(exp)
    assert got.shape == exp.shape, what
    np.testing.assert_array_equal(got.astype(_native(got.dtype)), exp, err_msg=what)


def _eval_kw(op, kw):
    """kw with the running statistics used read-only (eval / use_input_stats=False)."""
    kw = dict(kw)
    if op == "batch_norm":
        kw["training"] = False
    if op == "instance_norm":
        kw["use_input_stats"] = False
    return kw


@pytest.mark.parametrize("mode", ["x", "params", "all"])
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_nonnative_byte_order_like_native(op, dtype, mode):
    """x and/or every parameter (weight, bias, running statistics used read-only) byte-
    swapped give the native result. The review: '>f4' running_mean "must be a float array",
    '>f8' x rejected."""
    x, kw = valid_call(op, dtype, SHAPE, "byteorder", op)
    kw = _eval_kw(op, kw)
    y_native = FN[op](x, **_copy_kw(kw))
    xs = swapped(x) if mode in ("x", "all") else x
    kws = _copy_kw(kw)
    if mode in ("params", "all"):
        kws = {k: (swapped(v) if isinstance(v, np.ndarray) else v) for k, v in kws.items()}
    with unchanged(xs, *[v for v in kws.values() if isinstance(v, np.ndarray)]):
        y = FN[op](xs, **kws)
    assert y.dtype == _native(xs.dtype) and y.dtype.isnative, (
        "%s: result dtype %s for x of %s; expected the native %s"
        % (op, y.dtype.str, xs.dtype.str, _native(xs.dtype).str))
    _assert_same_values(y, y_native, "%s with byte-swapped %s" % (op, mode))


@pytest.mark.parametrize("swap_x", [False, True], ids=["x-native", "x-swapped"])
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("op", ["batch_norm", "instance_norm"])
def test_nonnative_running_stats_updated_in_place(op, dtype, swap_x):
    """Training with byte-swapped running statistics: the caller's arrays are updated in
    place (keeping their byte order) with the values of the native call."""
    x, kw = valid_call(op, dtype, SHAPE, "byteorder-train", op)
    kn = _copy_kw(kw)
    y_native = FN[op](x, **kn)
    ks = _copy_kw(kw)
    rm, rv = swapped(ks["running_mean"]), swapped(ks["running_var"])
    ks["running_mean"], ks["running_var"] = rm, rv
    rm_dtype = rm.dtype
    y = FN[op](swapped(x) if swap_x else x, **ks)
    assert ks["running_mean"] is rm and rm.dtype == rm_dtype and not rm.dtype.isnative
    _assert_same_values(rm, kn["running_mean"], "%s: byte-swapped running_mean" % op)
    _assert_same_values(rv, kn["running_var"], "%s: byte-swapped running_var" % op)
    _assert_same_values(y, y_native, "%s: output with byte-swapped running stats" % op)
    # and the values are the reference update
    _, erm, erv = REF[op](x, **_copy_kw(kw))
    tol = _y_tol(dtype)
    np.testing.assert_allclose(rm.astype(np.float64), erm, rtol=tol, atol=tol)
    np.testing.assert_allclose(rv.astype(np.float64), erv, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", OPS)
def test_nonnative_x_in_place_or_clear_error(op):
    """out=x for a byte-swapped x: either it normalizes in place (values of the native
    call, x keeps its dtype) or it is an error naming x/out with x unchanged."""
    x, kw = valid_call(op, np.float32, SHAPE, "byteorder-inplace", op)
    kw = _eval_kw(op, kw)
    y_native = FN[op](x, **_copy_kw(kw))
    xs = swapped(x)
    orig = xs.copy()
    try:
        res = FN[op](xs, **_copy_kw(kw), out=xs)
    except Exception as exc:          # noqa: BLE001 - the message is checked
        assert NAMES_X_OR_OUT.search(str(exc)), "%s: error %r names neither out nor x" % (
            op, exc)
        np.testing.assert_array_equal(xs, orig)
        return
    assert res is xs
    _assert_same_values(xs, y_native, "%s in place on byte-swapped x" % op)


MOMENT_AXES = [None, 0, 1, (0, 2), (1, 2)]


@pytest.mark.parametrize("axis", MOMENT_AXES, ids=[str(a) for a in MOMENT_AXES])
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_moments_nonnative_byte_order(dtype, axis):
    x = rng_for("byteorder-moments").standard_normal((6, 5, 40)).astype(dtype)
    m, v = fn.moments(x, axis)
    ms, vs = fn.moments(swapped(x), axis)
    for got, exp, name in ((ms, m, "mean"), (vs, v, "var")):
        assert np.asarray(got).dtype == _native(dtype), (name, np.asarray(got).dtype)
        _assert_same_values(got, exp, "moments(byte-swapped, axis=%s) %s" % (axis, name))
    m64, v64 = fn.moments(swapped(x), axis, dtype=np.float64)
    with _quiet_numpy():
        np.testing.assert_allclose(m64, np.mean(x, axis=axis, dtype=np.float64), rtol=1e-12,
                                   atol=1e-12)
        np.testing.assert_allclose(v64, np.var(x, axis=axis, dtype=np.float64), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=["f16", "f32", "f64"])
def test_accumulator_update_nonnative_byte_order(dtype):
    x = rng_for("byteorder-accum").standard_normal((30, 4)).astype(dtype)
    acc = fn.Moments(axis=0).update(swapped(x[:10])).update(swapped(x[10:]))
    assert acc.count == 30
    np.testing.assert_allclose(acc.mean, np.mean(x, axis=0, dtype=np.float64), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(acc.var(), np.var(x, axis=0, dtype=np.float64), rtol=1e-12,
                               atol=1e-12)


# ======================================================================================
# 9. merging an empty Moments; axes compared after normalization
# ======================================================================================

A5 = rng_for("merge", "a").standard_normal((5, 3))
B4 = rng_for("merge", "b").standard_normal((4, 3))


def _check_stats(acc, data, axis, what):
    assert acc.count == math.prod(data.shape[d] for d in _reduced_axes(axis, data.ndim)), what
    np.testing.assert_allclose(acc.mean, np.mean(data, axis=axis), rtol=1e-13, atol=1e-14,
                               err_msg=what + " mean")
    np.testing.assert_allclose(acc.var(), np.var(data, axis=axis), rtol=1e-13, atol=1e-14,
                               err_msg=what + " var")


EMPTY_SPELLINGS = [-2, (0,), [0], (-2,), 0]
MERGE_FORMS = ["a + e", "e + a", "a.merge(e)", "e.merge(a)"]


def _merge(form, a, e):
    if form == "a + e":
        return a + e
    if form == "e + a":
        return e + a
    if form == "a.merge(e)":
        return a.copy().merge(e)
    return e.merge(a)


@pytest.mark.parametrize("form", MERGE_FORMS)
@pytest.mark.parametrize("spelling", EMPTY_SPELLINGS, ids=[repr(s) for s in EMPTY_SPELLINGS])
def test_merge_with_empty_accumulator_is_noop(spelling, form):
    """a = Moments(axis=0) with data; e = Moments(axis=<same axis, other spelling>) without
    data. The review: a + Moments(axis=-2) and a + Moments(axis=(0,)) raised "cannot merge".
    (spelling 0 is a guard.)"""
    a = fn.Moments(axis=0).update(A5)
    e = fn.Moments(axis=spelling)
    res = _merge(form, a, e)
    what = "%s with e = Moments(axis=%r)" % (form, spelling)
    _check_stats(res, A5, 0, what)
    res.update(B4)                     # and it goes on accumulating 2-D batches over axis 0
    _check_stats(res, np.concatenate([A5, B4]), 0, what + ", then update")


@pytest.mark.parametrize("spelling", [-2, (0,), [0], 0], ids=repr)   # 0: guard
def test_merge_two_empty_accumulators(spelling):
    """Two accumulators without data, axes spelled differently, merge to an empty one."""
    both = fn.Moments(axis=0) + fn.Moments(axis=spelling)
    assert both.count == 0
    both.update(A5)
    _check_stats(both, A5, 0, "(Moments(0) + Moments(%r)).update(A)" % (spelling,))
    both2 = fn.Moments(axis=spelling) + fn.Moments(axis=0)
    both2.update(A5)
    _check_stats(both2, A5, 0, "(Moments(%r) + Moments(0)).update(A)" % (spelling,))


@pytest.mark.parametrize("other_axis,shape3", [(-2, False), ((0,), False), ([0], False),
                                               ((-3, -1), True), ((2, 0), True)],
                         ids=["-2", "(0,)", "[0]", "(-3,-1)", "(2,0)"])
def test_merge_same_axis_spelled_differently_with_data(other_axis, shape3):
    """guard: with data on both sides the axes compare after normalization."""
    if shape3:
        a_data = rng_for("merge3", "a").standard_normal((5, 3, 4))
        b_data = rng_for("merge3", "b").standard_normal((2, 3, 6))
        axis = (0, 2)
    else:
        a_data, b_data, axis = A5, B4, 0
    a = fn.Moments(axis=axis).update(a_data)
    b = fn.Moments(axis=other_axis).update(b_data)
    for res, first, second in ((a + b, a_data, b_data), (b + a, b_data, a_data)):
        if shape3:
            ref = np.concatenate([first.transpose(0, 2, 1).reshape(-1, 3),
                                  second.transpose(0, 2, 1).reshape(-1, 3)])
            _check_stats(res, ref, 0, "Moments(%r) + Moments(%r)" % (axis, other_axis))
        else:
            _check_stats(res, np.concatenate([first, second]), 0,
                         "Moments(0) + Moments(%r)" % (other_axis,))


def test_merge_different_axes_with_data_raises():
    """guard: axis 0 of (5, 3) batches and axis 1 of (3, 5) batches both keep shape (3,) but
    are different reductions: ValueError."""
    a = fn.Moments(axis=0).update(np.ones((5, 3)))
    b = fn.Moments(axis=1).update(np.ones((3, 5)))
    with pytest.raises(ValueError):
        a + b
    with pytest.raises(ValueError):
        b + a
    with pytest.raises(ValueError):
        a.copy().merge(b)
