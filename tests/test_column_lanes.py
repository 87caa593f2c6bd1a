"""Column statistics of float32 data in float32 lanes (channels-last BatchNorm training,
InstanceNorm and GroupNorm, channels-first LayerNorm, BatchNorm of (N, C)).

The float32 lanes are only a speed choice: every column whose float32 sums could have lost
digits (squares near overflow or underflow, a shift far from the column's mean, NaN or
infinity) is summed again in float64 lanes. These data are built to hit each of those
cases, on shapes large enough for every scheduling of the column kernel (column blocks
per sample, chunks of rows shared between threads, prefetching ahead), and are checked
against float64 NumPy formulas (fastnorm._reference) and for bit-identity across thread
counts."""

import numpy as np
import pytest

import fastnorm
from _helpers import (max_abs_err, ref_batch_norm, ref_channel_layer_norm, ref_group_norm,
                      ref_instance_norm, rng_for)


def channels_last(a):
    """The values of the NCHW array a in channels-last memory."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)


def _data(kind, shape, rng):
    """float32 NCHW data of one hard kind."""
    C = shape[1]
    x = rng.standard_normal(shape)
    if kind == "far_shift":       # the rows the shift is taken from are outliers
        x = 1e3 + x
        x.reshape(shape[0], C, -1)[:, :, :40] += 50.0
    elif kind == "huge":          # float32 squares of deviations overflow (1e20^2)
        x = x * 1e20
    elif kind == "tiny":          # float32 squares of deviations underflow (1e-25^2)
        x = x * 1e-25
    elif kind == "offset_columns":  # channel means far apart, spread 1e-2, at 1e4
        x = 1e4 + 1e-2 * (x + rng.uniform(-3, 3, C).reshape((1, C) + (1,) * (len(shape) - 2)))
    elif kind == "constant":
        x = np.full(shape, 3.25)
    return x.astype(np.float32)


# op -> (fastnorm call, float64 reference), both taking (x, eps)
OPS = {
    "batch_norm_train": (
        lambda x, eps, **kw: fastnorm.batch_norm(x, None, None, training=True, eps=eps, **kw),
        lambda x, eps: ref_batch_norm(x, None, None, None, None, True, 0.1, eps)[0]),
    "instance_norm": (
        lambda x, eps, **kw: fastnorm.instance_norm(x, eps=eps, **kw),
        lambda x, eps: ref_instance_norm(x, None, None, None, None, True, 0.1, eps)[0]),
    "group_norm": (
        lambda x, eps, **kw: fastnorm.group_norm(x, 4, eps=eps, **kw),
        lambda x, eps: ref_group_norm(x, 4, None, None, eps)[0]),
}
KINDS = ["far_shift", "huge", "tiny", "offset_columns", "constant"]
# (N, C, H, W): many rows per sample (row chunks shared out for N=1), several column blocks
SHAPES = {"N1": (1, 16, 48, 48), "N3": (3, 24, 30, 30), "C600": (2, 600, 20, 18)}


def _eps(kind):
    """eps 0 where the spread itself is below any eps (so that lost digits of the variance
    show in the output)."""
    return 0.0 if kind == "tiny" else 1e-5


def _bound(ref):
    return 1e-5 * max(1.0, float(np.nanmax(np.abs(ref))))


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("op", list(OPS))
def test_channels_last_float32_hard_data(op, kind, shape):
    call, ref_of = OPS[op]
    x = _data(kind, shape, rng_for("col-lanes", op, kind, shape))
    eps = 1e-5 if kind == "constant" else _eps(kind)
    ref = ref_of(x, eps)
    got = call(channels_last(x), eps)
    assert np.isfinite(got).all()
    err = max_abs_err(got, ref)
    assert err <= _bound(ref), f"max abs error {err:.3g}"


@pytest.mark.parametrize("op", list(OPS))
def test_nonfinite_value_poisons_its_channel_only(op):
    """A NaN in one channel and an infinity in another: those channels (all of the groups
    holding them) are NaN, as in the float64 reference; the others are unaffected."""
    call, ref_of = OPS[op]
    x = _data("offset_columns", (2, 16, 24, 24), rng_for("col-lanes-nan", op))
    x[0, 3, 5, 7] = np.nan
    x[1, 9, 0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        ref = ref_of(x, 1e-5)
    got = call(channels_last(x), 1e-5)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert max_abs_err(got, ref) <= _bound(ref)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("op", list(OPS))
def test_bit_identical_across_threads_on_hard_data(op, kind):
    """Large enough (above 2 MB) that the column kernel prefetches and shares out chunks."""
    call, _ = OPS[op]
    x = channels_last(_data(kind, (1, 64, 96, 96), rng_for("col-lanes-nt", op, kind)))
    runs = [call(x, _eps(kind) if kind != "constant" else 1e-5, num_threads=nt)
            for nt in (1, 2, 3)]
    for y in runs[1:]:
        np.testing.assert_array_equal(y, runs[0])


@pytest.mark.parametrize("kind", KINDS)
def test_channel_layer_norm_nchw_hard_data(kind):
    """Channels-first LayerNorm reduces down the columns of each sample's (C, H*W) matrix:
    over one chunk of rows (C <= 1024) and over several (C = 2500)."""
    for shape in [(2, 96, 20, 20), (2, 2500, 3, 4)]:
        x = _data(kind, shape, rng_for("col-lanes-cln", kind, shape))
        eps = 1e-6 if kind == "constant" else _eps(kind)
        ref = ref_channel_layer_norm(x, None, None, eps)
        err = max_abs_err(fastnorm.channel_layer_norm(x, eps=eps), ref)
        assert err <= _bound(ref), f"{shape}: max abs error {err:.3g}"


@pytest.mark.parametrize("kind", KINDS)
def test_batch_norm_2d_input_hard_data(kind):
    """BatchNorm of (N, C): column statistics over N rows, N above one chunk of rows."""
    x = _data(kind, (2600, 120, 1, 1), rng_for("col-lanes-bn2d", kind))[:, :, 0, 0].copy()
    eps = 1e-5 if kind == "constant" else _eps(kind)
    ref = ref_batch_norm(x, None, None, None, None, True, 0.1, eps)[0]
    err = max_abs_err(fastnorm.batch_norm(x, None, None, training=True, eps=eps), ref)
    assert err <= _bound(ref), f"max abs error {err:.3g}"
