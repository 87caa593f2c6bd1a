"""The six normalizations against PyTorch (torch==2.13.0 CPU) plus NumPy seed examples.

Reference: the torch function in float64 on the float64 cast of the same input. float64
results must agree to 1e-9; float32 results must be no less accurate than PyTorch's own
float32 result on the same case (see _helpers.assert_close_to_ref).
"""

import numpy as np
import pytest

import fastnorm
from _helpers import (NONCONTIG_KINDS, assert_close_to_ref, noncontig, random_data,
                      ref_batch_norm, ref_channel_layer_norm, ref_group_norm,
                      ref_instance_norm, ref_layer_norm, ref_rms_norm, rng_for, unchanged)

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = [np.float32, np.float64]
DT_IDS = ["f32", "f64"]
OUT_MODES = ["none", "buffer", "inplace", "noncontig"]
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def check_returned(res, return_stats, stat_shape, ref, peer, dtype):
    """y (and, with return_stats, the mean and rstd of shape stat_shape) against the
    float64 reference ref = (y, mean, rstd) and PyTorch's results peer (or None)."""
    if return_stats:
        assert isinstance(res, tuple) and len(res) == 3
        y, mean, rstd = res
        for name, got, i in (("mean", mean, 1), ("rstd", rstd, 2)):
            assert isinstance(got, np.ndarray)
            assert got.shape == stat_shape, (name, got.shape, stat_shape)
            assert got.dtype == dtype, (name, got.dtype)
            assert_close_to_ref(got, ref[i], dtype, peer and peer[i], name)
    else:
        assert isinstance(res, np.ndarray)
        y = res
    assert_close_to_ref(y, ref[0], dtype, peer and peer[0], "y")

def _t(a, tdtype):
    """A torch copy (never sharing memory with the NumPy array) or None."""
    if a is None:
        return None
    return torch.tensor(np.array(a, dtype=np.float64), dtype=tdtype)


def _np(t):
    return None if t is None else t.detach().numpy().astype(np.float64)


def _torch_runs(dtype, fn):
    """Run ``fn(tdtype)`` in float64, and in float32 too when the case is float32."""
    ref64 = fn(torch.float64)
    peer32 = fn(torch.float32) if np.dtype(dtype) == np.float32 else None
    return ref64, peer32


def _first(res):
    return res[0] if isinstance(res, tuple) else res


def run_fastnorm(fn, x, args, kwargs, out_mode, rng):
    """Call ``fn(x, *args, **kwargs)`` with the given out mode and check the buffer contract.

    Returns (the full result, with y replaced by the array written).
    """
    kwargs = dict(kwargs)
    if out_mode == "none":
        with unchanged(x):
            res = fn(x, *args, **kwargs)
        y = _first(res)
        assert isinstance(y, np.ndarray)
        assert y.flags.c_contiguous
        assert not np.shares_memory(y, x)
    elif out_mode == "buffer":
        out = np.full(x.shape, np.nan, dtype=x.dtype)
        with unchanged(x):
            res = fn(x, *args, out=out, **kwargs)
        y = _first(res)
        assert y is out, "out= buffer must be returned"
    elif out_mode == "inplace":
        xi = np.array(x, copy=True, order="C")
        res = fn(xi, *args, out=xi, **kwargs)
        y = _first(res)
        assert y is xi, "out=x must return x"
    elif out_mode == "noncontig":
        kinds = list(NONCONTIG_KINDS)
        start = int(rng.integers(len(kinds)))
        for kind in kinds[start:] + kinds[:start]:
            v = noncontig(x, kind)
            if not v.flags.c_contiguous:
                break
        assert not v.flags.c_contiguous
        with unchanged(v):
            res = fn(v, *args, **kwargs)
        y = _first(res)
        assert isinstance(y, np.ndarray) and y.flags.c_contiguous
    else:
        raise ValueError(out_mode)
    assert y.shape == x.shape and y.dtype == x.dtype
    return res


def _shape(rng, rank, C=None, min_spatial=1):
    n = int(rng.integers(2, 5))
    c = int(rng.choice([2, 3, 4, 6])) if C is None else C
    while True:
        spatial = tuple(int(s) for s in rng.integers(1, 6, size=rank - 2))
        if int(np.prod(spatial)) >= min_spatial:
            return (n, c) + spatial


def _params(rng, shape, dtype, affine, bias=True):
    if not affine:
        return None, None
    w = rng.uniform(0.5, 1.5, shape).astype(dtype)
    b = rng.normal(0.0, 1.0, shape).astype(dtype) if bias else None
    return w, b


def _running(rng, C, dtype):
    return rng.normal(0.0, 1.0, C).astype(dtype), rng.uniform(0.5, 2.0, C).astype(dtype)


# --------------------------------------------------------------------------------------
# batch_norm
# --------------------------------------------------------------------------------------

BN_MODES = ["train", "train_nostats", "eval", "eval_nostats"]


@pytest.mark.parametrize("out_mode", OUT_MODES)
@pytest.mark.parametrize("mode", BN_MODES)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("rank", [2, 3, 4, 5])
def test_batch_norm(rank, dtype, affine, mode, out_mode):
    rng = rng_for("bn", rank, np.dtype(dtype).name, affine, mode, out_mode)
    shape = _shape(rng, rank)
    C = shape[1]
    x = random_data(rng, shape, dtype)
    w, b = _params(rng, C, dtype, affine)
    training = mode.startswith("train")
    with_stats = not mode.endswith("nostats")
    rm, rv = _running(rng, C, dtype) if with_stats else (None, None)
    momentum = float(rng.choice([0.1, 0.25]))
    eps = float(rng.choice([1e-5, 1e-3]))

    def torch_run(td):
        rmt, rvt = _t(rm, td), _t(rv, td)
        # with no running buffers, batch statistics are used (also in eval mode)
        y = F.batch_norm(_t(x, td), rmt, rvt, _t(w, td), _t(b, td),
                         training or not with_stats, momentum, eps)
        return _np(y), _np(rmt), _np(rvt)

    ref, peer = _torch_runs(dtype, torch_run)
    rm_f = None if rm is None else rm.copy()
    rv_f = None if rv is None else rv.copy()
    y = run_fastnorm(fastnorm.batch_norm, x, (rm_f, rv_f, w, b, training, momentum, eps), {},
                     out_mode, rng)
    assert_close_to_ref(y, ref[0], dtype, peer and peer[0], "y")
    if with_stats:
        assert rm_f.dtype == dtype and rv_f.dtype == dtype
        if training:
            assert_close_to_ref(rm_f, ref[1], dtype, peer and peer[1], "running_mean")
            assert_close_to_ref(rv_f, ref[2], dtype, peer and peer[2], "running_var")
        else:
            np.testing.assert_array_equal(rm_f, rm)
            np.testing.assert_array_equal(rv_f, rv)
    # the torch reference agrees with the NumPy formulas
    np_ref = ref_batch_norm(x, rm, rv, w, b, training, momentum, eps)
    np.testing.assert_allclose(ref[0], np_ref[0], rtol=1e-9, atol=1e-9)


def test_batch_norm_keyword_arguments():
    rng = rng_for("bn-kw")
    x = random_data(rng, (4, 3, 5), np.float64)
    rm, rv = _running(rng, 3, np.float64)
    w, b = _params(rng, 3, np.float64, True)
    y = fastnorm.batch_norm(x, running_mean=rm, running_var=rv, weight=w, bias=b,
                            training=False, momentum=0.1, eps=1e-4, num_threads=1)
    ref = F.batch_norm(_t(x, torch.float64), _t(rm, torch.float64), _t(rv, torch.float64),
                       _t(w, torch.float64), _t(b, torch.float64), False, 0.1, 1e-4)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-9, atol=1e-9)


def test_batch_norm_repeated_training_steps_track_torch():
    rng = rng_for("bn-steps")
    rm, rv = np.zeros(4), np.ones(4)
    rmt, rvt = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    for step in range(5):
        x = random_data(rng, (3, 4, 2, 3), np.float64)
        y = fastnorm.batch_norm(x, rm, rv, None, None, True, 0.2, 1e-5)
        yt = F.batch_norm(_t(x, torch.float64), rmt, rvt, None, None, True, 0.2, 1e-5)
        np.testing.assert_allclose(y, yt.numpy(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(rm, rmt.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(rv, rvt.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xdt,pdt", [(np.float32, np.float64), (np.float64, np.float32)])
def test_batch_norm_mixed_parameter_dtypes(xdt, pdt):
    rng = rng_for("bn-mixed", np.dtype(xdt).name)
    x = random_data(rng, (4, 3, 6), xdt)
    w, b = _params(rng, 3, pdt, True)
    rm, rv = _running(rng, 3, pdt)
    rm0, rv0 = rm.copy(), rv.copy()
    y = fastnorm.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)
    assert y.dtype == xdt
    assert rm.dtype == pdt and rv.dtype == pdt
    ry, rrm, rrv = ref_batch_norm(x, rm0, rv0, w, b, True, 0.1, 1e-5)
    tol = 1e-9 if (xdt == np.float64 and pdt == np.float64) else 2e-6
    np.testing.assert_allclose(y, ry, rtol=tol, atol=tol * 5)
    np.testing.assert_allclose(rm, rrm, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(rv, rrv, rtol=2e-6, atol=2e-6)


def test_batch_norm_strided_running_stats_updated_in_place():
    rng = rng_for("bn-strided-stats")
    x = random_data(rng, (5, 3, 4), np.float64)
    store = np.zeros((2, 6))
    store[1] = 1.0
    rm, rv = store[0, ::2], store[1, ::2]
    y = fastnorm.batch_norm(x, rm, rv, None, None, True, 0.5, 1e-5)
    ry, rrm, rrv = ref_batch_norm(x, np.zeros(3), np.ones(3), None, None, True, 0.5, 1e-5)
    np.testing.assert_allclose(y, ry, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(store[0, ::2], rrm, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(store[1, ::2], rrv, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(store[0, 1::2], 0.0)
    np.testing.assert_array_equal(store[1, 1::2], 1.0)


# --------------------------------------------------------------------------------------
# instance_norm
# --------------------------------------------------------------------------------------

IN_MODES = ["nostats", "train_stats", "eval_stats"]


@pytest.mark.parametrize("out_mode", OUT_MODES)
@pytest.mark.parametrize("mode", IN_MODES)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("rank", [3, 4, 5])
def test_instance_norm(rank, dtype, affine, mode, out_mode):
    rng = rng_for("in", rank, np.dtype(dtype).name, affine, mode, out_mode)
    shape = _shape(rng, rank, min_spatial=2)
    C = shape[1]
    x = random_data(rng, shape, dtype)
    w, b = _params(rng, C, dtype, affine)
    use_input_stats = mode != "eval_stats"
    rm, rv = _running(rng, C, dtype) if mode != "nostats" else (None, None)
    momentum = float(rng.choice([0.1, 0.3]))
    eps = float(rng.choice([1e-5, 1e-3]))

    def torch_run(td):
        rmt, rvt = _t(rm, td), _t(rv, td)
        y = F.instance_norm(_t(x, td), rmt, rvt, _t(w, td), _t(b, td), use_input_stats,
                            momentum, eps)
        return _np(y), _np(rmt), _np(rvt)

    ref, peer = _torch_runs(dtype, torch_run)
    rm_f = None if rm is None else rm.copy()
    rv_f = None if rv is None else rv.copy()
    y = run_fastnorm(fastnorm.instance_norm, x,
                     (rm_f, rv_f, w, b, use_input_stats, momentum, eps), {}, out_mode, rng)
    assert_close_to_ref(y, ref[0], dtype, peer and peer[0], "y")
    if mode == "train_stats":
        assert_close_to_ref(rm_f, ref[1], dtype, peer and peer[1], "running_mean")
        assert_close_to_ref(rv_f, ref[2], dtype, peer and peer[2], "running_var")
    elif mode == "eval_stats":
        np.testing.assert_array_equal(rm_f, rm)
        np.testing.assert_array_equal(rv_f, rv)
    np_ref = ref_instance_norm(x, rm, rv, w, b, use_input_stats, momentum, eps)
    np.testing.assert_allclose(ref[0], np_ref[0], rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------
# group_norm
# --------------------------------------------------------------------------------------

def _torch_group_norm(x, G, w, b, eps, td):
    xt = _t(x, td)
    N, C = x.shape[:2]
    hxw = int(np.prod(x.shape[2:]))
    y, mean, rstd = torch.ops.aten.native_group_norm(xt, _t(w, td), _t(b, td), N, C, hxw, G, eps)
    y2 = F.group_norm(xt, G, _t(w, td), _t(b, td), eps)
    assert torch.equal(y, y2)
    return _np(y), _np(mean), _np(rstd)


@pytest.mark.parametrize("out_mode", OUT_MODES)
@pytest.mark.parametrize("return_stats", [False, True], ids=["y", "stats"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("rank", [2, 3, 4, 5])
def test_group_norm(rank, dtype, affine, return_stats, out_mode):
    rng = rng_for("gn", rank, np.dtype(dtype).name, affine, return_stats, out_mode)
    C = int(rng.choice([2, 4, 6, 8]))
    shape = _shape(rng, rank, C=C, min_spatial=1)
    divisors = [g for g in range(1, C + 1) if C % g == 0]
    G = int(rng.choice(divisors))
    x = random_data(rng, shape, dtype)
    w, b = _params(rng, C, dtype, affine)
    eps = float(rng.choice([1e-5, 1e-3]))

    ref, peer = _torch_runs(dtype, lambda td: _torch_group_norm(x, G, w, b, eps, td))
    kwargs = {"return_stats": True} if return_stats else {}
    res = run_fastnorm(fastnorm.group_norm, x, (G, w, b, eps), kwargs, out_mode, rng)
    check_returned(res, return_stats, (shape[0], G), ref, peer, dtype)
    np_ref = ref_group_norm(x, G, w, b, eps)
    np.testing.assert_allclose(ref[0], np_ref[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ref[2], np_ref[2], rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------
# layer_norm
# --------------------------------------------------------------------------------------

LN_CASES = [(r, k) for r in (2, 3, 4, 5) for k in range(1, r + 1)]


def _normalized_shape_arg(rng, nshape):
    choice = int(rng.integers(3))
    if len(nshape) == 1 and choice == 0:
        return int(nshape[0])
    return list(nshape) if choice == 1 else tuple(nshape)


def _torch_layer_norm(x, nshape, w, b, eps, td):
    xt = _t(x, td)
    y, mean, rstd = torch.ops.aten.native_layer_norm(xt, list(nshape), _t(w, td), _t(b, td), eps)
    y2 = F.layer_norm(xt, list(nshape), _t(w, td), _t(b, td), eps)
    assert torch.equal(y, y2)
    return _np(y), _np(mean), _np(rstd)


def _trailing_case(rng, rank, k, dtype):
    """A random x of the given rank (batch >= 2) and its trailing k dims to normalize."""
    shape = tuple(int(s) for s in rng.integers(1, 6, size=rank))
    shape = (max(shape[0], 2),) + shape[1:]
    return shape, shape[rank - k:], random_data(rng, shape, dtype)


def trailing_dims_cases(flag, values, ids, affine_ids=("affine", "plain")):
    """The parametrization of the trailing-dims normalizations (layer_norm, rms_norm):
    every (rank, k) of LN_CASES, dtype, affine or not, the op's own flag and out mode."""
    marks = [pytest.mark.parametrize("out_mode", OUT_MODES),
             pytest.mark.parametrize(flag, values, ids=ids),
             pytest.mark.parametrize("affine", [True, False], ids=list(affine_ids)),
             pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS),
             pytest.mark.parametrize("rank,k", LN_CASES, ids=["r%d-k%d" % c for c in LN_CASES])]

    def decorate(test):
        for mark in reversed(marks):
            test = mark(test)
        return test
    return decorate


@trailing_dims_cases("return_stats", [False, True], ["y", "stats"])
def test_layer_norm(rank, k, dtype, affine, return_stats, out_mode):
    rng = rng_for("ln", rank, k, np.dtype(dtype).name, affine, return_stats, out_mode)
    shape, nshape, x = _trailing_case(rng, rank, k, dtype)
    w, b = _params(rng, nshape, dtype, affine)
    eps = float(rng.choice([1e-5, 1e-3]))
    ns_arg = _normalized_shape_arg(rng, nshape)

    ref, peer = _torch_runs(dtype, lambda td: _torch_layer_norm(x, nshape, w, b, eps, td))
    kwargs = {"return_stats": True} if return_stats else {}
    res = run_fastnorm(fastnorm.layer_norm, x, (ns_arg, w, b, eps), kwargs, out_mode, rng)
    check_returned(res, return_stats, shape[:rank - k] + (1,) * k, ref, peer, dtype)
    np_ref = ref_layer_norm(x, nshape, w, b, eps)
    np.testing.assert_allclose(ref[0], np_ref[0], rtol=1e-9, atol=1e-9)


def test_layer_norm_normalized_shape_forms_agree():
    x = random_data(rng_for("ln-forms"), (3, 4, 5), np.float64)
    a = fastnorm.layer_norm(x, 5)
    for form in ((5,), [5], np.int64(5)):
        np.testing.assert_array_equal(fastnorm.layer_norm(x, form), a)
    b = fastnorm.layer_norm(x, (4, 5))
    np.testing.assert_array_equal(fastnorm.layer_norm(x, [4, 5]), b)


# --------------------------------------------------------------------------------------
# rms_norm
# --------------------------------------------------------------------------------------

@trailing_dims_cases("eps_kind", ["default", "given"], None, ("weight", "plain"))
def test_rms_norm(rank, k, dtype, affine, eps_kind, out_mode):
    rng = rng_for("rms", rank, k, np.dtype(dtype).name, affine, eps_kind, out_mode)
    shape, nshape, x = _trailing_case(rng, rank, k, dtype)
    w, _ = _params(rng, nshape, dtype, affine, bias=False)
    ns_arg = _normalized_shape_arg(rng, nshape)
    if eps_kind == "default":
        args = (ns_arg, w)
        eps_ref = float(np.finfo(dtype).eps)  # eps=None means finfo(x.dtype).eps
    else:
        eps_ref = float(rng.choice([1e-6, 1e-3]))
        args = (ns_arg, w, eps_ref)

    ref, peer = _torch_runs(
        dtype, lambda td: _np(F.rms_norm(_t(x, td), list(nshape), _t(w, td), eps_ref)))
    y = run_fastnorm(fastnorm.rms_norm, x, args, {}, out_mode, rng)
    assert isinstance(y, np.ndarray)
    assert_close_to_ref(y, ref, dtype, peer, "y")
    np.testing.assert_allclose(ref, ref_rms_norm(x, nshape, w, eps_ref), rtol=1e-9, atol=1e-9)


def test_rms_norm_default_eps_is_input_dtype_eps():
    # tiny rows: eps dominates, so the default eps is visible in the result
    x = np.full((2, 4), 1e-4, dtype=np.float32)
    y = fastnorm.rms_norm(x, 4)
    expect = 1e-4 / np.sqrt(1e-8 + np.finfo(np.float32).eps)
    np.testing.assert_allclose(y, expect, rtol=1e-5)
    y64 = fastnorm.rms_norm(x.astype(np.float64), 4)
    np.testing.assert_allclose(y64, 1e-4 / np.sqrt(1e-8 + np.finfo(np.float64).eps),
                               rtol=1e-9)


# --------------------------------------------------------------------------------------
# channel_layer_norm
# --------------------------------------------------------------------------------------

def _torch_channel_layer_norm(x, w, b, eps, td):
    xt = _t(x, td)
    perm = (0,) + tuple(range(2, x.ndim)) + (1,)
    inv = tuple(int(i) for i in np.argsort(perm))
    y = F.layer_norm(xt.permute(perm), (x.shape[1],), _t(w, td), _t(b, td), eps)
    return _np(y.permute(inv))


@pytest.mark.parametrize("out_mode", OUT_MODES)
@pytest.mark.parametrize("eps_kind", ["default", "given"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("rank", [2, 3, 4, 5])
def test_channel_layer_norm(rank, dtype, affine, eps_kind, out_mode):
    rng = rng_for("cln", rank, np.dtype(dtype).name, affine, eps_kind, out_mode)
    shape = _shape(rng, rank, C=int(rng.choice([2, 3, 5, 8])))
    C = shape[1]
    x = random_data(rng, shape, dtype)
    w, b = _params(rng, C, dtype, affine)
    if eps_kind == "default":
        eps, args = 1e-6, (w, b)
    else:
        eps = float(rng.choice([1e-5, 1e-3]))
        args = (w, b, eps)

    ref, peer = _torch_runs(dtype, lambda td: _torch_channel_layer_norm(x, w, b, eps, td))
    y = run_fastnorm(fastnorm.channel_layer_norm, x, args, {}, out_mode, rng)
    assert isinstance(y, np.ndarray)
    assert_close_to_ref(y, ref, dtype, peer, "y")
    np.testing.assert_allclose(ref, ref_channel_layer_norm(x, w, b, eps), rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------
# seed examples (NumPy formulas, no torch needed beyond the module import)
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("eps", [0.0, 1e-12])
def test_seed_layer_norm_example(dtype, eps):
    x = np.array([[1.3, 0.9, 2.0, 2.6]], dtype=dtype)
    y, mean, rstd = fastnorm.layer_norm(x, 4, eps=eps, return_stats=True)
    assert mean.shape == (1, 1) and rstd.shape == (1, 1)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(mean, [[1.7]], rtol=tol)
    np.testing.assert_allclose(rstd, [[1.0 / np.sqrt(0.425 + eps)]], rtol=tol)
    var = 1.0 / np.asarray(rstd, np.float64) ** 2 - eps
    np.testing.assert_allclose(var, [[0.425]], rtol=tol * 4)
    np.testing.assert_allclose(y, [[-0.614, -1.227, 0.460, 1.381]], atol=1e-3)
    exact = (np.array([1.3, 0.9, 2.0, 2.6]) - 1.7) / np.sqrt(0.425 + eps)
    np.testing.assert_allclose(y[0], exact, rtol=tol, atol=tol)


def test_seed_batch_norm_per_channel_over_n_h_w():
    # 16 values per channel: N=2, H=2, W=4 (the mean divides by 16, not by 8)
    x = np.arange(2 * 3 * 2 * 4, dtype=np.float64).reshape(2, 3, 2, 4) ** 1.5 / 10
    rm, rv = np.zeros(3), np.ones(3)
    y = fastnorm.batch_norm(x, rm, rv, training=True, momentum=1.0, eps=1e-5)
    mean = x.sum(axis=(0, 2, 3)) / 16
    var = ((x - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3)) / 16
    expect = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)
    # momentum 1: running stats become the batch mean and the unbiased batch variance
    np.testing.assert_allclose(rm, mean, rtol=1e-12)
    np.testing.assert_allclose(rv, var * 16 / 15, rtol=1e-12)
    # per channel: every channel's output has mean 0 and variance var/(var+eps)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-9)


def test_seed_instance_norm_per_sample_channel_over_h_w():
    x = np.arange(2 * 3 * 2 * 4, dtype=np.float64).reshape(2, 3, 2, 4) ** 1.5 / 10
    y = fastnorm.instance_norm(x, eps=1e-5)
    mean = x.sum(axis=(2, 3), keepdims=True) / 8
    var = ((x - mean) ** 2).sum(axis=(2, 3), keepdims=True) / 8
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.mean(axis=(2, 3)), 0.0, atol=1e-12)
    # not BatchNorm: statistics are not shared across the batch
    yb = fastnorm.batch_norm(x, training=True, eps=1e-5)
    assert np.max(np.abs(y - yb)) > 0.1


def test_seed_group_norm_and_rms_norm_formulas():
    x = np.arange(2 * 4 * 3, dtype=np.float64).reshape(2, 4, 3) ** 1.3
    y, mean, rstd = fastnorm.group_norm(x, 2, eps=1e-5, return_stats=True)
    g = x.reshape(2, 2, 6)
    np.testing.assert_allclose(mean, g.mean(axis=2), rtol=1e-12)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(g.var(axis=2) + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(
        y, ((g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + 1e-5)).reshape(
            x.shape), rtol=1e-12, atol=1e-12)
    r = fastnorm.rms_norm(np.array([[3.0, 4.0]]), 2, eps=0.0)
    np.testing.assert_allclose(r, [[3 / np.sqrt(12.5), 4 / np.sqrt(12.5)]], rtol=1e-14)


# --------------------------------------------------------------------------------------
# empty inputs: empty outputs where PyTorch returns them
# --------------------------------------------------------------------------------------

EMPTY_CASES = [
    ("batch_norm_eval", (0, 3, 4)),
    ("instance_norm", (0, 3, 4)),
    ("instance_norm", (2, 0, 4)),
    ("group_norm", (0, 4, 3)),
    ("group_norm", (2, 4, 0)),
    ("layer_norm", (0, 5)),
    ("layer_norm", (3, 0, 5)),
    ("rms_norm", (0, 5)),
    ("channel_layer_norm", (0, 3, 4)),
    ("channel_layer_norm", (2, 3, 0)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name,shape", EMPTY_CASES, ids=["%s-%s" % c for c in EMPTY_CASES])
def test_empty_input_gives_empty_output(name, shape, dtype):
    x = np.zeros(shape, dtype=dtype)
    C = shape[1]
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    calls = {
        "batch_norm_eval": lambda: fastnorm.batch_norm(x, rm, rv, None, None, False),
        "instance_norm": lambda: fastnorm.instance_norm(x),
        "group_norm": lambda: fastnorm.group_norm(x, 2),
        "layer_norm": lambda: fastnorm.layer_norm(x, shape[-1]),
        "rms_norm": lambda: fastnorm.rms_norm(x, shape[-1]),
        "channel_layer_norm": lambda: fastnorm.channel_layer_norm(x),
    }
    y = calls[name]()
    assert isinstance(y, np.ndarray) and y.shape == shape and y.dtype == dtype
    np.testing.assert_array_equal(rm, 0.0)
    np.testing.assert_array_equal(rv, 1.0)


@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 3, 0)])
def test_empty_batch_norm_training_is_empty_or_value_error(shape):
    # PyTorch returns an empty tensor; DESIGN.md calls < 2 values per channel an error:
    # either is acceptable, but nothing else (no crash, no garbage shape).
    x = np.zeros(shape, dtype=np.float32)
    try:
        y = fastnorm.batch_norm(x, None, None, None, None, True)
    except ValueError:
        return
    assert y.shape == shape and y.dtype == np.float32
