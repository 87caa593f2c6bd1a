"""Accuracy of the six normalizations on ill-conditioned float32 data, constant groups, NaN.

Reference: float64 NumPy math on the *same* float32 inputs (fastnorm._reference, through the
op registry tests/_ops.py, which the tests iterate).
"""

import numpy as np
import pytest

import fastnorm
from _helpers import max_abs_err, ref_batch_norm, rng_for
from _ops import EVAL, NORMS, by_function, fn_id

SHAPES = [(3, 6, 40, 50), (2, 6, 3000), (4000, 6)]
GROUPS = 3  # group_norm groups (C = 6 in every shape)
NORM = by_function(NORMS)


def _arg(op, ndim):
    """group_norm: GROUPS; layer_norm / rms_norm: the dims after (N, C), or the last one."""
    return {"num_groups": GROUPS, "normalized_shape": max(ndim - 2, 1)}.get(op.shape_arg)


def _params(op, x, affine, rng):
    if not affine:
        return None, None
    shape = op.param_shape(x.shape, _arg(op, x.ndim))
    w = rng.uniform(0.5, 1.5, shape).astype(x.dtype)
    b = rng.normal(0.0, 1.0, shape).astype(x.dtype) if "bias" in op.params else None
    return w, b


def run_op(op, x, w, b, **kw):
    """fastnorm result (float array) for op with its default eps."""
    C = x.shape[1]
    # float64 running statistics: a float32 running_var would overflow at 1e30 data
    running = (np.zeros(C, np.float64), np.ones(C, np.float64)) if op.running else None
    return op.call(x, w, b, running, _arg(op, x.ndim), **kw)


def ref_op(op, x, w, b):
    """float64 reference with the op's default eps, on the same (float32) values."""
    return op.ref(x, w, b, arg=_arg(op, x.ndim))[0]


def group_ids(op, shape):
    """Integer label of the normalization group of every element."""
    return op.groups(shape, _arg(op, len(shape)))


# (op, shape) pairs; instance_norm needs spatial dims, so it gets no rank-2 shape
OP_SHAPES = [(op, s) for op in NORMS for s in SHAPES if len(s) >= op.min_ndim]
OP_SHAPE_IDS = ["%s-r%d" % (op.function, len(s)) for op, s in OP_SHAPES]


def _ill_data(shape, loc, scale, rng):
    # a per-channel offset of a few std keeps the groups' means distinct
    C = shape[1]
    off = rng.uniform(-3, 3, C).reshape((1, C) + (1,) * (len(shape) - 2))
    return (loc + scale * (rng.standard_normal(shape) + off)).astype(np.float32)


ILL_CASES = [
    ("mean1e4_std1e-2", 1e4, 1e-2),
    ("mean1e6_std1", 1e6, 1.0),
    ("mean-1e6_std1", -1e6, 1.0),
    ("mean1e5_std1e-1", 1e5, 0.1),
    ("mean1e19_std1e14", 1e19, 1e14),
    ("mean1e19_std1e18", 1e19, 1e18),
    ("mean-1e19_std1e17", -1e19, 1e17),
    ("mean1e30_std1e28", 1e30, 1e28),
]


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("case,loc,scale", ILL_CASES, ids=[c[0] for c in ILL_CASES])
@pytest.mark.parametrize("op,shape", OP_SHAPES, ids=OP_SHAPE_IDS)
def test_float32_accuracy_ill_conditioned(op, case, loc, scale, shape, affine):
    rng = rng_for("acc", op.function, case, shape, affine)
    x = _ill_data(shape, loc, scale, rng)
    assert np.all(np.isfinite(x))
    w, b = _params(op, x, affine, rng)
    y = run_op(op, x, w, b)
    assert y.dtype == np.float32
    ref = ref_op(op, x, w, b)
    assert np.all(np.isfinite(ref))
    err = max_abs_err(y, ref)
    assert err <= 1e-5, "%s %s: max abs error %.3g > 1e-5" % (op.function, case, err)


@pytest.mark.parametrize("case,loc,scale", ILL_CASES[:4], ids=[c[0] for c in ILL_CASES[:4]])
def test_float32_moments_of_ill_conditioned_match(case, loc, scale):
    rng = rng_for("acc-moments", case)
    x = _ill_data((8, 6, 1000), loc, scale, rng)
    mean, var = fastnorm.moments(x, axis=(0, 2), dtype=np.float64)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-12)


# --------------------------------------------------------------------------------------
# the same data through PyTorch float32
# --------------------------------------------------------------------------------------

def _torch_op(op, x, w, b):
    pytest.importorskip("torch")
    return op.torch(x, w, b, _arg(op, x.ndim))


# RMSNorm subtracts no mean: PyTorch's float32 result has no cancellation to lose digits to
@pytest.mark.parametrize("op", [op for op in NORMS if op.centered], ids=fn_id)
def test_torch_float32_much_worse_on_mean1e4_std1e_2(op):
    """The motivating example: PyTorch's float32 result errs by ~0.1, fastnorm by < 1e-5."""
    shape = SHAPES[0]
    rng = rng_for("torch-vs", op.function)
    x = _ill_data(shape, 1e4, 1e-2, rng)
    w, b = _params(op, x, True, rng)
    ref = ref_op(op, x, w, b)
    torch_err = max_abs_err(_torch_op(op, x, w, b), ref)
    ours = max_abs_err(run_op(op, x, w, b), ref)
    print("%s: torch float32 max abs error %.3g, fastnorm %.3g" % (op.function, torch_err,
                                                                   ours))
    assert ours <= 1e-5
    assert torch_err > 1e-3
    assert torch_err > 100 * ours


# --------------------------------------------------------------------------------------
# constant groups normalize to exactly `bias`
# --------------------------------------------------------------------------------------

CONSTANTS = [0.0, 3.7, 1e4 + 0.1, -2.5e6, 1e19, -7e-3, 1e-30]


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op,shape", OP_SHAPES, ids=OP_SHAPE_IDS)
def test_constant_group_gives_exactly_bias(op, shape, dtype, affine):
    rng = rng_for("const", op.function, shape, np.dtype(dtype).name, affine)
    x = _ill_data(shape, 1e4, 1e-2, rng).astype(dtype)
    gid = group_ids(op, shape)
    n_groups = int(gid.max()) + 1
    chosen = rng.choice(n_groups, size=min(n_groups - 1, len(CONSTANTS)), replace=False)
    consts = CONSTANTS[:len(chosen)] if op.centered else [0.0] * len(chosen)
    const_mask = np.zeros(shape, dtype=bool)
    for g, c in zip(chosen, consts):
        m = gid == g
        x[m] = c
        const_mask |= m
    w, b = _params(op, x, affine, rng)
    y = run_op(op, x, w, b)
    assert not np.isnan(y).any()
    expect = np.zeros(shape, dtype) if b is None else op.expand(b, shape)
    np.testing.assert_array_equal(y[const_mask], expect[const_mask])
    # the other groups are unaffected
    ref = ref_op(op, x, w, b)
    assert max_abs_err(y[~const_mask], ref[~const_mask]) <= 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", [op for op in NORMS if op.centered], ids=fn_id)
def test_entirely_constant_input_gives_bias(op, dtype):
    shape = (4, 6, 33, 35)
    x = np.full(shape, 0.1, dtype=dtype)
    rng = rng_for("all-const", op.function)
    w, b = _params(op, x, True, rng)
    y = run_op(op, x, w, b)
    np.testing.assert_array_equal(y, op.expand(b, shape))


# --------------------------------------------------------------------------------------
# NaN stays in its group
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op,shape", OP_SHAPES, ids=OP_SHAPE_IDS)
def test_nan_stays_in_its_group(op, shape, dtype):
    rng = rng_for("nan", op.function, shape, np.dtype(dtype).name)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    flat = int(rng.integers(x.size))
    x.reshape(-1)[flat] = np.nan
    gid = group_ids(op, shape)
    bad = gid == gid.reshape(-1)[flat]
    w, b = _params(op, x, True, rng)
    y = run_op(op, x, w, b)
    assert np.isnan(y[bad]).all(), "the NaN group must be NaN throughout"
    assert np.isfinite(y[~bad]).all(), "NaN leaked into other groups"
    ref = ref_op(op, x, w, b)
    tol = 1e-5 if dtype == np.float32 else 1e-9
    assert max_abs_err(y[~bad], ref[~bad]) <= tol


def test_nan_in_batch_norm_running_stats_only_in_its_channel():
    rng = rng_for("nan-bn-stats")
    x = rng.standard_normal((4, 5, 6, 7))
    x[2, 3, 1, 4] = np.nan
    rm, rv = np.zeros(5), np.ones(5)
    fastnorm.batch_norm(x, rm, rv, None, None, True, 0.1, 1e-5)
    _, rrm, rrv = ref_batch_norm(x, np.zeros(5), np.ones(5), None, None, True, 0.1, 1e-5)
    assert np.isnan(rm[3]) and np.isnan(rv[3])
    keep = np.arange(5) != 3
    np.testing.assert_allclose(rm[keep], rrm[keep], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv[keep], rrv[keep], rtol=1e-12)


@pytest.mark.parametrize("op", EVAL, ids=fn_id)
def test_eval_paths_are_accurate_too(op):
    """Eval BatchNorm / InstanceNorm (running statistics) on ill-conditioned float32 data:
    the apply step must not fold the mean into a float32 offset (x*a + (b - mean*a))."""
    rng = rng_for("eval-acc", op.function)
    x = _ill_data((4, 6, 20, 30), 1e4, 1e-2, rng)
    x64 = x.astype(np.float64)
    rm = x64.mean(axis=(0, 2, 3)).astype(np.float32)
    rv = x64.var(axis=(0, 2, 3)).astype(np.float32)
    w, b = _params(op, x, True, rng)
    y = op.call(x, w, b, (rm, rv))
    ref = op.ref(x, w, b, (rm, rv))[0]
    assert max_abs_err(y, ref) <= 1e-5


# --------------------------------------------------------------------------------------
# adversarial: bursts of outliers at regular positions (e.g. at the start of every block
# of 2048 values). A shifted-sums kernel whose shift comes from the first values of a block
# then sums large deviations and cancels; float32 round-off in those sums is amplified.
# --------------------------------------------------------------------------------------

BURSTS = [(period, burst, loc, off)
          for period in (256, 2048)
          for burst in (4, 16)
          for loc, off in ((1e7, 3000.0), (1e6, 300.0))]
BURST_IDS = ["p%d-b%d-mean%g-off%g" % b for b in BURSTS]


def bursty(rng, shape, axis, period, burst, loc, off):
    """float32 data ~ N(loc, 1) along `axis`, with `burst` values loc+off at the start of
    every `period` values along that axis."""
    x = loc + rng.standard_normal(shape)
    xm = np.moveaxis(x, axis, -1)
    n = xm.shape[-1]
    assert n % period == 0
    xm.reshape(xm.shape[:-1] + (n // period, period))[..., :burst] = loc + off
    return x.astype(np.float32)


@pytest.mark.parametrize("period,burst,loc,off", BURSTS, ids=BURST_IDS)
@pytest.mark.parametrize("shape,axis", [((16384,), None), ((4, 8192), 1), ((8192, 4), 0)])
def test_moments_variance_with_outlier_bursts(shape, axis, period, burst, loc, off):
    rng = rng_for("bursty-moments", shape, axis, period, burst, loc)
    x = bursty(rng, shape, 0 if axis is None else axis, period, burst, loc, off)
    ref = x.astype(np.float64).var(axis=axis)
    assert np.all(loc / np.sqrt(ref) <= 1e6)  # within the contract's ill-conditioning range
    for dtype in (None, np.float64):
        _, var = fastnorm.moments(x, axis=axis, dtype=dtype)
        rel = float(np.max(np.abs(np.asarray(var, np.float64) - ref) / ref))
        assert rel <= 1e-6, "variance relative error %.3g (dtype=%s)" % (rel, dtype)


BURST_OPS = [
    (NORM["batch_norm"], (2, 3, 8192), 2),
    (NORM["batch_norm"], (8192, 3), 0),
    (NORM["instance_norm"], (2, 3, 8192), 2),
    (NORM["group_norm"], (2, 6, 4096), 2),
    (NORM["layer_norm"], (4, 8192), 1),
    (NORM["rms_norm"], (4, 8192), 1),
    (NORM["channel_layer_norm"], (2, 8192, 3), 1),
]


@pytest.mark.parametrize("period,burst,loc,off", BURSTS, ids=BURST_IDS)
@pytest.mark.parametrize("op,shape,axis", BURST_OPS,
                         ids=["%s-%s" % (o.function, len(s)) for o, s, _ in BURST_OPS])
def test_float32_accuracy_with_outlier_bursts(op, shape, axis, period, burst, loc, off):
    rng = rng_for("bursty", op.function, shape, period, burst, loc)
    x = bursty(rng, shape, axis, period, burst, loc, off)
    w, b = _params(op, x, True, rng)
    y = run_op(op, x, w, b)
    ref = ref_op(op, x, w, b)
    err = max_abs_err(y, ref)
    assert err <= 1e-5, "%s: max abs error %.3g > 1e-5 (max |y| %.3g)" % (
        op.function, err, float(np.max(np.abs(ref))))
