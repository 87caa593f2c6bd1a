"""Every validation rule of the six normalizations.

Each error case is run with out=None, with out=<separate buffer> and with out=x (in place)
where that makes sense, and checks afterwards that x, out and the running statistics (and the
other parameters) are bit-for-bit unchanged: errors must be raised before anything is written.
"""

import numpy as np
import pytest

from _helpers import BAD_DTYPES, arrays_in, as_bad_dtype, dtype_pattern, noncontig, rng_for
from _ops import NORMS, by_function, eval_form, fn_id

# NORMS (tests/_ops.py): the six normalizations, each in training mode with every parameter
NORM = by_function(NORMS)
SHAPE = (3, 4, 5, 6)
C = SHAPE[1]
NSHAPE = SHAPE[2:]


def valid_kwargs(op, dtype=np.float32, shape=SHAPE):
    """x and a full valid keyword set (training mode with running stats where applicable)."""
    return op.valid_call(dtype, shape, "validation", op.function, shape, np.dtype(dtype).name)


def expect_error(op, x, kw, exc, match, out_modes=("none", "buffer", "inplace"), watch=()):
    """Call op with each out mode; it must raise and leave every array untouched."""
    ran = 0
    for mode in out_modes:
        call_kw = dict(kw)
        if mode == "buffer":
            call_kw["out"] = np.full(x.shape, 7.25, dtype=x.dtype)
        elif mode == "inplace":
            if not (isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.flags.c_contiguous
                    and x.flags.writeable):
                continue
            x = x.copy()
            call_kw["out"] = x
        arrays = arrays_in(x, call_kw, *watch)
        copies = [a.copy() for a in arrays]
        with pytest.raises(exc, match=match):
            op.fn(x, **call_kw)
        for a, c in zip(arrays, copies):
            np.testing.assert_array_equal(a, c, err_msg="%s (out mode %s) modified an input"
                                          % (op.function, mode))
        ran += 1
    assert ran >= 1


# --------------------------------------------------------------------------------------
# sanity: the valid calls are valid
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_valid_baseline_call_works(op):
    x, kw = valid_kwargs(op)
    y = op.fn(x, **kw)
    assert y.shape == x.shape and y.dtype == x.dtype and np.isfinite(y).all()
    out = np.empty_like(x)
    assert op.fn(x, out=out, **valid_kwargs(op)[1]) is out


# --------------------------------------------------------------------------------------
# dtype of x
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_x_bad_dtype(op, bad):
    x, kw = valid_kwargs(op)
    xb = as_bad_dtype(x, bad)
    expect_error(op, xb, kw, TypeError, dtype_pattern(xb), out_modes=("none",))


@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_x_float16_supported_or_rejected(op):
    x, kw = valid_kwargs(op)
    x16 = x.astype(np.float16)
    ref = op.fn(x16.astype(np.float32), **valid_kwargs(op)[1])
    try:
        y = op.fn(x16, **kw)
    except TypeError as e:
        assert "float16" in str(e)
        return
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), ref, rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------------------
# rank
# --------------------------------------------------------------------------------------

LOW_RANK = [(), (4,), (3, 4)]
# instance_norm's statistics are per (sample, channel): one spatial value is too few
ONE_VALUE_GROUPS = {"instance_norm": [(3, 4, 1), (3, 4, 1, 1)]}
# x of fewer dims than each op needs (the ops without normalized_shape: they need no
# other argument to say so)
RANK_CASES = [(op, shape) for op in NORMS if op.shape_arg != "normalized_shape"
              for shape in LOW_RANK[:op.min_ndim] + ONE_VALUE_GROUPS.get(op.function, [])]


@pytest.mark.parametrize("op,shape", RANK_CASES, ids=fn_id)
def test_wrong_rank(op, shape):
    x = np.asarray(rng_for("rank", op.function, shape).standard_normal(shape),
                   dtype=np.float32)
    kw = {"num_groups": 2} if op.shape_arg == "num_groups" else {}
    expect_error(op, x, kw, ValueError, None)


@pytest.mark.parametrize("op", [NORM["instance_norm"]], ids=fn_id)
def test_instance_norm_too_few_spatial_elements_with_running_stats(op):
    x, kw = valid_kwargs(op, shape=(3, 4, 1))
    expect_error(op, x, kw, ValueError, None)


# --------------------------------------------------------------------------------------
# parameters: shape and dtype
# --------------------------------------------------------------------------------------

OP_PARAMS = [(op, p) for op in NORMS for p in op.params]
CHANNEL_BAD_SHAPES = [(C + 1,), (C - 1,), (1, C), (), (C, 1), (2 * C,)]
NORM_BAD_SHAPES = [NSHAPE[::-1], (NSHAPE[0] * NSHAPE[1],), (1,) + NSHAPE, NSHAPE[-1:],
                   NSHAPE + (1,), (C,)]


@pytest.mark.parametrize("op,param", OP_PARAMS, ids=fn_id)
def test_parameter_wrong_shape(op, param):
    bad_shapes = NORM_BAD_SHAPES if op.per_element else CHANNEL_BAD_SHAPES
    for shape in bad_shapes:
        x, kw = valid_kwargs(op)
        kw[param] = np.ones(shape, dtype=x.dtype)
        expect_error(op, x, kw, ValueError, param)


@pytest.mark.parametrize("bad", ["int64", "int32", "bool", "complex128", "object"])
@pytest.mark.parametrize("op,param", OP_PARAMS, ids=fn_id)
def test_parameter_non_float_dtype(op, param, bad):
    x, kw = valid_kwargs(op)
    kw[param] = as_bad_dtype(kw[param], bad)
    expect_error(op, x, kw, TypeError, param)


# --------------------------------------------------------------------------------------
# normalized_shape and num_groups
# --------------------------------------------------------------------------------------

BAD_NSHAPES = [5, (5,), NSHAPE[::-1], (4, 6), (4, 5, 7), (7,), (2,) + SHAPE, (1,) + SHAPE,
               (3, 4, 5, 6, 6), 0]


NSHAPE_OPS = [op for op in NORMS if op.shape_arg == "normalized_shape"]


def with_normalized_shape(op, nshape):
    """A valid call of op with normalized_shape=nshape and no parameters (whose shape
    would be wrong for it)."""
    x, kw = valid_kwargs(op)
    kw = dict(kw, normalized_shape=nshape, weight=None)
    if "bias" in op.params:
        kw["bias"] = None
    return x, kw


@pytest.mark.parametrize("nshape", BAD_NSHAPES, ids=[str(s) for s in BAD_NSHAPES])
@pytest.mark.parametrize("op", NSHAPE_OPS, ids=fn_id)
def test_normalized_shape_not_matching_trailing_dims(op, nshape):
    x, kw = with_normalized_shape(op, nshape)
    expect_error(op, x, kw, ValueError, "normalized_shape")


@pytest.mark.parametrize("nshape", [(5.0, 6), "56", None, 6.0])
@pytest.mark.parametrize("op", NSHAPE_OPS, ids=fn_id)
def test_normalized_shape_wrong_type(op, nshape):
    x, kw = with_normalized_shape(op, nshape)
    expect_error(op, x, kw, (TypeError, ValueError), "normalized_shape")


@pytest.mark.parametrize("num_groups", [3, 8, 0, -2, -4, 1.5, 2.0, "2", None])
def test_num_groups_invalid(num_groups):
    x, kw = valid_kwargs(NORM["group_norm"])  # C = 4
    kw["num_groups"] = num_groups
    expect_error(NORM["group_norm"], x, kw, (ValueError, TypeError), "num_groups")


# --------------------------------------------------------------------------------------
# eps, momentum
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [-1e-5, -1.0, float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_eps_invalid(op, eps):
    x, kw = valid_kwargs(op)
    kw["eps"] = eps
    expect_error(op, x, kw, ValueError, "eps")


@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_eps_zero_is_allowed(op):
    x, kw = valid_kwargs(op)
    kw["eps"] = 0.0
    y = op.fn(x, **kw)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("op", [op for op in NORMS if "momentum" in op.scalars], ids=fn_id)
def test_momentum_nan(op):
    x, kw = valid_kwargs(op)
    kw["momentum"] = float("nan")
    expect_error(op, x, kw, ValueError, "momentum")


# --------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------

OUT_KINDS = ["wrong_shape", "wrong_shape_same_size", "wrong_rank", "noncontig_strided",
             "fortran", "readonly", "wrong_dtype"]


def _bad_out(kind, x):
    if kind == "wrong_shape":
        return np.zeros(x.shape[:-1] + (x.shape[-1] + 1,), x.dtype)
    if kind == "wrong_shape_same_size":
        return np.zeros((x.shape[0], x.size // x.shape[0]), x.dtype)
    if kind == "wrong_rank":
        return np.zeros((1,) + x.shape, x.dtype)
    if kind == "noncontig_strided":
        return noncontig(np.zeros_like(x), "step_last", fill=5.0)
    if kind == "fortran":
        return np.asfortranarray(np.zeros_like(x))
    if kind == "readonly":
        o = np.zeros_like(x)
        o.flags.writeable = False
        return o
    if kind == "wrong_dtype":
        return np.zeros(x.shape, np.float64 if x.dtype == np.float32 else np.float32)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", OUT_KINDS)
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_out_invalid(op, kind):
    x, kw = valid_kwargs(op)
    kw["out"] = _bad_out(kind, x)
    exc = (ValueError, TypeError) if kind == "wrong_dtype" else ValueError
    expect_error(op, x, kw, exc, r"\bout\b", out_modes=("none",))


@pytest.mark.parametrize("shift", [1, 7, -1])
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_out_partially_overlapping_x(op, shift):
    x0, kw = valid_kwargs(op)
    n = x0.size
    base = np.full(n + abs(shift), 3.5, dtype=x0.dtype)
    if shift > 0:
        x = base[:n].reshape(x0.shape)
        out = base[shift:shift + n].reshape(x0.shape)
    else:
        x = base[-shift:].reshape(x0.shape)
        out = base[:n].reshape(x0.shape)
    x[...] = x0
    assert x.flags.c_contiguous and out.flags.c_contiguous and np.shares_memory(x, out)
    kw["out"] = out
    expect_error(op, x, kw, ValueError, r"\bout\b", out_modes=("none",), watch=(base,))


@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_out_is_x_but_x_not_contiguous(op):
    x0, kw = valid_kwargs(op)
    x = noncontig(x0, "step_last", fill=2.0)
    kw["out"] = x
    expect_error(op, x, kw, ValueError, r"\bout\b|in.place|contiguous", out_modes=("none",),
                 watch=(x.base,))


@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_out_is_x_but_x_read_only(op):
    x, kw = valid_kwargs(op)
    x.flags.writeable = False
    kw["out"] = x
    expect_error(op, x, kw, ValueError, r"\bout\b|in.place|writ|read", out_modes=("none",))


@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_read_only_x_without_out_is_fine(op):
    x, kw = valid_kwargs(op)
    x.flags.writeable = False
    y = op.fn(x, **kw)
    assert y.flags.writeable and y.shape == x.shape


# --------------------------------------------------------------------------------------
# running statistics
# --------------------------------------------------------------------------------------

RUNNING_OPS = [op for op in NORMS if op.running]


@pytest.mark.parametrize("which", ["running_mean", "running_var", "both"])
@pytest.mark.parametrize("op", RUNNING_OPS, ids=fn_id)
def test_read_only_running_stats_in_training(op, which):
    x, kw = valid_kwargs(op)
    names = ["running_mean", "running_var"] if which == "both" else [which]
    for name in names:
        kw[name].flags.writeable = False
    expect_error(op, x, kw, ValueError, "|".join(names))


@pytest.mark.parametrize("op", RUNNING_OPS, ids=fn_id)
def test_read_only_running_stats_fine_in_eval(op):
    x, kw = valid_kwargs(eval_form(op))       # the same arguments with training=False
    for name in ("running_mean", "running_var"):
        kw[name].flags.writeable = False
    y = op.fn(x, **kw)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("with_stats", [True, False])
@pytest.mark.parametrize("shape", [(1, 4), (1, 4, 1), (1, 4, 1, 1), (1, 4, 1, 1, 1)])
def test_batch_norm_too_few_values_per_channel_in_training(shape, with_stats):
    x, kw = valid_kwargs(NORM["batch_norm"], shape=shape)
    if not with_stats:
        kw["running_mean"] = kw["running_var"] = None
    expect_error(NORM["batch_norm"], x, kw, ValueError, None)


def test_batch_norm_single_sample_fine_in_eval():
    x, kw = valid_kwargs(NORM["batch_norm"], shape=(1, 4))
    kw["training"] = False
    y = NORM["batch_norm"].fn(x, **kw)
    expect = ((x - kw["running_mean"]) / np.sqrt(kw["running_var"] + 1e-5) * kw["weight"]
              + kw["bias"])
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# num_threads
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("nt", [0, -1])
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_num_threads_non_positive(op, nt):
    x, kw = valid_kwargs(op)
    kw["num_threads"] = nt
    expect_error(op, x, kw, ValueError, "num_threads")


@pytest.mark.parametrize("nt", [1.5, True, "2"])
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_num_threads_wrong_type(op, nt):
    x, kw = valid_kwargs(op)
    kw["num_threads"] = nt
    expect_error(op, x, kw, TypeError, "num_threads")
