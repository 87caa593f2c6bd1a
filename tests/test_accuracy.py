"""Accuracy of the six normalizations on ill-conditioned float32 data, constant groups, NaN.

Reference: float64 NumPy math on the *same* float32 inputs (tests/_helpers.py ref_*).
"""

import numpy as np
import pytest

import fastnorm
from _helpers import (max_abs_err, ref_batch_norm, ref_channel_layer_norm, ref_group_norm,
                      ref_instance_norm, ref_layer_norm, ref_rms_norm, rng_for)

OPS = ["batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
       "channel_layer_norm"]
SHAPES = [(3, 6, 40, 50), (2, 6, 3000), (4000, 6)]
GROUPS = 3  # group_norm groups (C = 6 in every shape)


def _nshape(x):
    return x.shape[2:] if x.ndim > 2 else x.shape[-1:]


def _param_shape(op, x):
    return _nshape(x) if op in ("layer_norm", "rms_norm") else (x.shape[1],)


def _params(op, x, affine, rng):
    if not affine:
        return None, None
    shape = _param_shape(op, x)
    w = rng.uniform(0.5, 1.5, shape).astype(x.dtype)
    b = None if op == "rms_norm" else rng.normal(0.0, 1.0, shape).astype(x.dtype)
    return w, b


def run_op(op, x, w, b, **kw):
    """fastnorm result (float array) for op with its default eps."""
    C = x.shape[1]
    if op == "batch_norm":
        # float64 running statistics: a float32 running_var would overflow at 1e30 data
        rm, rv = np.zeros(C, np.float64), np.ones(C, np.float64)
        y = fastnorm.batch_norm(x, rm, rv, w, b, True, 0.1, **kw)
        return y
    if op == "instance_norm":
        return fastnorm.instance_norm(x, None, None, w, b, **kw)
    if op == "group_norm":
        return fastnorm.group_norm(x, GROUPS, w, b, **kw)
    if op == "layer_norm":
        return fastnorm.layer_norm(x, _nshape(x), w, b, **kw)
    if op == "rms_norm":
        return fastnorm.rms_norm(x, _nshape(x), w, **kw)
    if op == "channel_layer_norm":
        return fastnorm.channel_layer_norm(x, w, b, **kw)
    raise ValueError(op)


def ref_op(op, x, w, b):
    """float64 reference with the op's default eps, on the same (float32) values."""
    if op == "batch_norm":
        return ref_batch_norm(x, None, None, w, b, True, 0.1, 1e-5)[0]
    if op == "instance_norm":
        return ref_instance_norm(x, None, None, w, b, True, 0.1, 1e-5)[0]
    if op == "group_norm":
        return ref_group_norm(x, GROUPS, w, b, 1e-5)[0]
    if op == "layer_norm":
        return ref_layer_norm(x, _nshape(x), w, b, 1e-5)[0]
    if op == "rms_norm":
        return ref_rms_norm(x, _nshape(x), w, None)
    if op == "channel_layer_norm":
        return ref_channel_layer_norm(x, w, b, 1e-6)
    raise ValueError(op)


def group_ids(op, shape):
    """Integer label of the normalization group of every element."""
    N, C = shape[:2]
    chan = (1, C) + (1,) * (len(shape) - 2)
    if op == "batch_norm":
        g = np.arange(C).reshape(chan)
    elif op == "instance_norm":
        g = (np.arange(N)[:, None] * C + np.arange(C)[None, :]).reshape((N, C) + (1,) * (
            len(shape) - 2))
    elif op == "group_norm":
        g = (np.arange(N)[:, None] * GROUPS + np.arange(C)[None, :] // (C // GROUPS)).reshape(
            (N, C) + (1,) * (len(shape) - 2))
    elif op in ("layer_norm", "rms_norm"):
        k = len(shape) - 2 if len(shape) > 2 else 1
        lead = shape[:len(shape) - k]
        g = np.arange(int(np.prod(lead))).reshape(lead + (1,) * k)
    elif op == "channel_layer_norm":
        spatial = shape[2:]
        g = np.arange(N * int(np.prod(spatial))).reshape((N, 1) + spatial)
    else:
        raise ValueError(op)
    return np.broadcast_to(g, shape)


def _applicable(op, shape):
    return not (op == "instance_norm" and len(shape) < 3)


# (op, shape) pairs; instance_norm needs spatial dims, so it gets no rank-2 shape
OP_SHAPES = [(op, s) for op in OPS for s in SHAPES if _applicable(op, s)]
OP_SHAPE_IDS = ["%s-r%d" % (op, len(s)) for op, s in OP_SHAPES]


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
    rng = rng_for("acc", op, case, shape, affine)
    x = _ill_data(shape, loc, scale, rng)
    assert np.all(np.isfinite(x))
    w, b = _params(op, x, affine, rng)
    y = run_op(op, x, w, b)
    assert y.dtype == np.float32
    ref = ref_op(op, x, w, b)
    assert np.all(np.isfinite(ref))
    err = max_abs_err(y, ref)
    assert err <= 1e-5, "%s %s: max abs error %.3g > 1e-5" % (op, case, err)


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
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = torch.from_numpy(np.ascontiguousarray(x))
    tw = None if w is None else torch.from_numpy(w)
    tb = None if b is None else torch.from_numpy(b)
    if op == "batch_norm":
        y = F.batch_norm(t, None, None, tw, tb, True, 0.1, 1e-5)
    elif op == "instance_norm":
        y = F.instance_norm(t, None, None, tw, tb, True, 0.1, 1e-5)
    elif op == "group_norm":
        y = F.group_norm(t, GROUPS, tw, tb, 1e-5)
    elif op == "layer_norm":
        y = F.layer_norm(t, list(_nshape(x)), tw, tb, 1e-5)
    elif op == "channel_layer_norm":
        perm = (0,) + tuple(range(2, x.ndim)) + (1,)
        inv = tuple(int(i) for i in np.argsort(perm))
        y = F.layer_norm(t.permute(perm), (x.shape[1],), tw, tb, 1e-6).permute(inv)
    else:
        raise ValueError(op)
    return y.numpy()


@pytest.mark.parametrize("op", [o for o in OPS if o != "rms_norm"])
def test_torch_float32_much_worse_on_mean1e4_std1e_2(op):
    """The motivating example: PyTorch's float32 result errs by ~0.1, fastnorm by < 1e-5."""
    shape = SHAPES[0]
    rng = rng_for("torch-vs", op)
    x = _ill_data(shape, 1e4, 1e-2, rng)
    w, b = _params(op, x, True, rng)
    ref = ref_op(op, x, w, b)
    torch_err = max_abs_err(_torch_op(op, x, w, b), ref)
    ours = max_abs_err(run_op(op, x, w, b), ref)
    print("%s: torch float32 max abs error %.3g, fastnorm %.3g" % (op, torch_err, ours))
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
    rng = rng_for("const", op, shape, np.dtype(dtype).name, affine)
    x = _ill_data(shape, 1e4, 1e-2, rng).astype(dtype)
    gid = group_ids(op, shape)
    n_groups = int(gid.max()) + 1
    chosen = rng.choice(n_groups, size=min(n_groups - 1, len(CONSTANTS)), replace=False)
    consts = [0.0] * len(chosen) if op == "rms_norm" else CONSTANTS[:len(chosen)]
    const_mask = np.zeros(shape, dtype=bool)
    for g, c in zip(chosen, consts):
        m = gid == g
        x[m] = c
        const_mask |= m
    w, b = _params(op, x, affine, rng)
    y = run_op(op, x, w, b)
    assert not np.isnan(y).any()
    if b is None:
        expect = np.zeros(shape, dtype)
    else:
        bshape = b.shape if op == "layer_norm" else (1, shape[1]) + (1,) * (len(shape) - 2)
        expect = np.broadcast_to(b.reshape(bshape), shape)
    np.testing.assert_array_equal(y[const_mask], expect[const_mask])
    # the other groups are unaffected
    ref = ref_op(op, x, w, b)
    assert max_abs_err(y[~const_mask], ref[~const_mask]) <= 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", ["batch_norm", "instance_norm", "group_norm", "layer_norm",
                                "channel_layer_norm"])
def test_entirely_constant_input_gives_bias(op, dtype):
    shape = (4, 6, 33, 35)
    x = np.full(shape, 0.1, dtype=dtype)
    rng = rng_for("all-const", op)
    w, b = _params(op, x, True, rng)
    y = run_op(op, x, w, b)
    bshape = b.shape if op == "layer_norm" else (1, 6, 1, 1)
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(bshape), shape))


# --------------------------------------------------------------------------------------
# NaN stays in its group
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op,shape", OP_SHAPES, ids=OP_SHAPE_IDS)
def test_nan_stays_in_its_group(op, shape, dtype):
    rng = rng_for("nan", op, shape, np.dtype(dtype).name)
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


@pytest.mark.parametrize("op", ["batch_norm", "instance_norm"])
def test_eval_paths_are_accurate_too(op):
    """Eval BatchNorm / InstanceNorm (running statistics) on ill-conditioned float32 data:
    the apply step must not fold the mean into a float32 offset (x*a + (b - mean*a))."""
    rng = rng_for("eval-acc", op)
    x = _ill_data((4, 6, 20, 30), 1e4, 1e-2, rng)
    x64 = x.astype(np.float64)
    rm = x64.mean(axis=(0, 2, 3)).astype(np.float32)
    rv = x64.var(axis=(0, 2, 3)).astype(np.float32)
    w, b = _params(op, x, True, rng)
    if op == "batch_norm":
        y = fastnorm.batch_norm(x, rm, rv, w, b, False)
        ref = ref_batch_norm(x, rm, rv, w, b, False)[0]
    else:
        y = fastnorm.instance_norm(x, rm, rv, w, b, False)
        ref = ref_instance_norm(x, rm, rv, w, b, False)[0]
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
    ("batch_norm", (2, 3, 8192), 2),
    ("batch_norm", (8192, 3), 0),
    ("instance_norm", (2, 3, 8192), 2),
    ("group_norm", (2, 6, 4096), 2),
    ("layer_norm", (4, 8192), 1),
    ("rms_norm", (4, 8192), 1),
    ("channel_layer_norm", (2, 8192, 3), 1),
]


@pytest.mark.parametrize("period,burst,loc,off", BURSTS, ids=BURST_IDS)
@pytest.mark.parametrize("op,shape,axis", BURST_OPS,
                         ids=["%s-%s" % (o, len(s)) for o, s, _ in BURST_OPS])
def test_float32_accuracy_with_outlier_bursts(op, shape, axis, period, burst, loc, off):
    rng = rng_for("bursty", op, shape, period, burst, loc)
    x = bursty(rng, shape, axis, period, burst, loc, off)
    w, b = _params(op, x, True, rng)
    y = run_op(op, x, w, b)
    ref = ref_op(op, x, w, b)
    err = max_abs_err(y, ref)
    assert err <= 1e-5, "%s: max abs error %.3g > 1e-5 (max |y| %.3g)" % (
        op, err, float(np.max(np.abs(ref))))
