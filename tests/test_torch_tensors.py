"""Every public function on CPU torch tensors: tensors in, tensors out, against
torch.nn.functional (and torch.var_mean for the statistics).

float32 and float64, contiguous and channels_last, out=None, out=buffer and out=x in
place; running statistics tensors updated in place; the error cases (grad needed, another
device, dtypes NumPy lacks, sparse tensors), each raised before anything is written; and
importing fastnorm does not import torch.
"""
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install "
                                            "torch==2.13.0)")
F = torch.nn.functional

import fastnorm  # noqa: E402

SHAPE = (3, 8, 5, 6)
C = SHAPE[1]
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-9, atol=1e-9)}


def _data(dtype, layout, seed=0, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2.0 + 1.5).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _params(dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = (torch.rand(C, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    b = torch.randn(C, generator=g, dtype=torch.float64).to(dtype)
    rm = torch.randn(C, generator=g, dtype=torch.float64).to(dtype)
    rv = (torch.rand(C, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    return w, b, rm, rv


def _ln_params(shape, dtype):
    g = torch.Generator().manual_seed(2)
    return ((torch.rand(shape, generator=g, dtype=torch.float64) + 0.5).to(dtype),
            torch.randn(shape, generator=g, dtype=torch.float64).to(dtype))


def _cl_torch(x, w, b, eps):
    return F.layer_norm(x.permute(0, 2, 3, 1), (C,), w, b, eps).permute(0, 3, 1, 2)


# name -> (fastnorm call(x, params, out), torch reference(x64, params64), running stats
#          updated, channels_last result native)
def _cases():
    def bn_train(m, x, p, **kw):
        w, b, rm, rv = p
        return m.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5, **kw)

    def bn_eval(m, x, p, **kw):
        w, b, rm, rv = p
        return m.batch_norm(x, rm, rv, w, b, False, 0.1, 1e-5, **kw)

    def in_stats(m, x, p, **kw):
        w, b, rm, rv = p
        return m.instance_norm(x, rm, rv, w, b, True, 0.1, 1e-5, **kw)

    def in_running(m, x, p, **kw):
        w, b, rm, rv = p
        return m.instance_norm(x, rm, rv, w, b, False, 0.1, 1e-5, **kw)

    def gn(m, x, p, **kw):
        w, b = p[:2]
        return m.group_norm(x, 4, w, b, 1e-5, **kw)

    def ln(m, x, p, **kw):
        w, b = _ln_params(SHAPE[1:], x.dtype)
        return m.layer_norm(x, SHAPE[1:], w, b, 1e-5, **kw)

    def rms(m, x, p, **kw):
        w, _ = _ln_params(SHAPE[1:], x.dtype)
        return m.rms_norm(x, SHAPE[1:], w, 1e-6, **kw)

    def rms_default_eps(m, x, p, **kw):
        return m.rms_norm(x, SHAPE[1:], None, None, **kw)

    def cln(m, x, p, **kw):
        w, b = p[:2]
        return m.channel_layer_norm(x, w, b, 1e-6, **kw)

    return {"batch_norm_train": bn_train, "batch_norm_eval": bn_eval,
            "instance_norm": in_stats, "instance_norm_running": in_running,
            "group_norm": gn, "layer_norm": ln, "rms_norm": rms,
            "rms_norm_default_eps": rms_default_eps, "channel_layer_norm": cln}


CASES = _cases()
UPDATES_RUNNING = {"batch_norm_train", "instance_norm"}


class _TorchF:
    """torch.nn.functional under fastnorm's names (the reference)."""
    batch_norm = staticmethod(F.batch_norm)
    instance_norm = staticmethod(F.instance_norm)
    layer_norm = staticmethod(lambda x, shape, *a: F.layer_norm(x, list(shape), *a))
    rms_norm = staticmethod(lambda x, shape, *a: F.rms_norm(x, list(shape), *a))

    @staticmethod
    def group_norm(x, groups, w, b, eps):
        return F.group_norm(x, groups, w, b, eps)

    @staticmethod
    def channel_layer_norm(x, w, b, eps):
        return _cl_torch(x, w, b, eps)


@pytest.mark.parametrize("mode", ["none", "buffer", "inplace"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(CASES))
def test_norm_on_tensors_matches_torch(name, dtype, layout, mode):
    call = CASES[name]
    x = _data(dtype, layout)
    params = _params(dtype)
    ref_params = tuple(p.to(torch.float64).clone() for p in params)
    expected = call(_TorchF, x.to(torch.float64), ref_params)
    x_before = x.clone()
    kw = {}
    if mode == "buffer":
        kw["out"] = torch.empty_like(x)
    elif mode == "inplace":
        kw["out"] = x
    y = call(fastnorm, x, params, **kw)

    assert type(y) is torch.Tensor and y.dtype == dtype and y.shape == x.shape
    if mode == "none":
        assert torch.equal(x, x_before)                     # x is never modified
        if layout == "channels_last":                       # the layout is native, kept
            assert y.is_contiguous(memory_format=torch.channels_last)
    else:
        assert y is kw["out"]                               # out=t returns t itself
    torch.testing.assert_close(y.to(torch.float64), expected, **TOL[dtype])
    if name in UPDATES_RUNNING:                             # updated in place, as torch
        for got, ref in zip(params[2:], ref_params[2:]):
            torch.testing.assert_close(got.to(torch.float64), ref, **TOL[dtype])
    else:
        for got, ref in zip(params, ref_params):
            assert torch.equal(got.to(torch.float64), ref)


def test_in_place_writes_the_tensor_memory_and_bumps_its_version():
    x = _data(torch.float32, "contiguous")
    expected = F.layer_norm(x, (SHAPE[-1],))
    ptr, version = x.data_ptr(), x._version
    y = fastnorm.layer_norm(x, SHAPE[-1], out=x)
    assert y is x and x.data_ptr() == ptr
    assert x._version > version          # autograd learns that x was written
    torch.testing.assert_close(x, expected, **TOL[torch.float32])


def test_running_statistics_versions_bumped():
    x = _data(torch.float32, "contiguous")
    w, b, rm, rv = _params(torch.float32)
    versions = rm._version, rv._version
    fastnorm.batch_norm(x, rm, rv, w, b, training=True)
    assert rm._version > versions[0] and rv._version > versions[1]


def test_result_shares_no_memory_with_x_and_comes_from_numpy_without_copy():
    x = _data(torch.float64, "contiguous")
    y = fastnorm.group_norm(x, 2)
    assert y.data_ptr() != x.data_ptr()
    y.add_(1.0)                          # a regular, writable tensor
    assert not torch.equal(y, fastnorm.group_norm(x, 2))


def test_return_stats_are_tensors():
    x = _data(torch.float32, "contiguous")
    y, mean, rstd = fastnorm.layer_norm(x, (5, 6), return_stats=True)
    assert all(type(t) is torch.Tensor for t in (y, mean, rstd))
    ref_mean = x.to(torch.float64).mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(mean.to(torch.float64), ref_mean, rtol=1e-6, atol=1e-6)
    y, mean, rstd = fastnorm.group_norm(x, 4, return_stats=True)
    assert mean.shape == (3, 4) and rstd.shape == (3, 4) and type(rstd) is torch.Tensor


def test_float16_tensor_in_float16_out():
    x = _data(torch.float16, "contiguous")
    y = fastnorm.layer_norm(x, SHAPE[-1])
    assert y.dtype == torch.float16
    expected = F.layer_norm(x.to(torch.float64), (SHAPE[-1],))
    torch.testing.assert_close(y.to(torch.float64), expected, rtol=2e-3, atol=2e-3)


def test_numpy_and_tensor_arguments_mixed():
    x = _data(torch.float64, "contiguous")
    w = np.linspace(0.5, 1.5, C)
    out = np.empty(SHAPE)
    y = fastnorm.instance_norm(x, weight=w, out=out)     # an ndarray out stays that ndarray
    assert y is out
    expected = F.instance_norm(x, weight=torch.from_numpy(w))
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------
# statistics

@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("axis", [None, 1, (0, 2, 3), (-1, 0)])
def test_moments_on_tensors_matches_var_mean(axis, dtype, layout):
    x = _data(dtype, layout)
    dims = tuple(range(x.dim())) if axis is None else axis
    ref_var, ref_mean = torch.var_mean(x.to(torch.float64), dim=dims, correction=1)
    mean, var = fastnorm.moments(x, axis, ddof=1)
    assert type(mean) is torch.Tensor and type(var) is torch.Tensor
    assert mean.dtype == dtype and mean.shape == ref_mean.shape
    torch.testing.assert_close(mean.to(torch.float64), ref_mean, **TOL[dtype])
    torch.testing.assert_close(var.to(torch.float64), ref_var, **TOL[dtype])


def test_moments_dtype_may_be_a_torch_dtype():
    x = _data(torch.float32, "contiguous")
    mean, var = fastnorm.moments(x, (0, 2, 3), keepdims=True, dtype=torch.float64)
    assert mean.dtype == torch.float64 and mean.shape == (1, C, 1, 1)
    ref_var, ref_mean = torch.var_mean(x.to(torch.float64), dim=(0, 2, 3), keepdim=True,
                                       correction=0)
    torch.testing.assert_close(var, ref_var, rtol=1e-6, atol=1e-9)


def test_moments_accumulator_takes_tensor_batches():
    x = _data(torch.float32, "channels_last")
    acc = fastnorm.Moments(axis=(0, 2, 3))
    for batch in x.split(1):
        assert acc.update(batch) is acc
    acc.update(x.numpy())                    # arrays and tensors mix
    both = torch.cat([x, x]).to(torch.float64)
    ref_var, ref_mean = torch.var_mean(both, dim=(0, 2, 3), correction=0)
    assert acc.count == 2 * SHAPE[0] * SHAPE[2] * SHAPE[3]
    np.testing.assert_allclose(acc.mean, ref_mean.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(acc.var(), ref_var.numpy(), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------
# errors, raised before anything is written, naming the argument

def _all_unchanged(*tensors):
    copies = [t.detach().clone() for t in tensors]

    def check():
        for t, c in zip(tensors, copies):
            assert torch.equal(t.detach(), c)
    return check


def test_x_requiring_grad_under_grad_mode_is_refused():
    x = _data(torch.float32, "contiguous").requires_grad_()
    with pytest.raises(ValueError, match=r"\bx requires grad.*no_grad"):
        fastnorm.layer_norm(x, SHAPE[-1])
    with torch.no_grad():                # without grad mode it is just data
        y = fastnorm.layer_norm(x, SHAPE[-1])
    assert not y.requires_grad
    torch.testing.assert_close(y, F.layer_norm(x.detach(), (SHAPE[-1],)), **TOL[torch.float32])


def test_parameter_requiring_grad_named_and_nothing_written():
    x = _data(torch.float32, "contiguous")
    w = torch.nn.Parameter(torch.ones(C))
    _, b, rm, rv = _params(torch.float32)
    unchanged = _all_unchanged(x, rm, rv)
    with pytest.raises(ValueError, match=r"\bweight requires grad"):
        fastnorm.batch_norm(x, rm, rv, w, b, training=True, out=x)
    unchanged()
    with torch.inference_mode():
        fastnorm.batch_norm(x, rm, rv, w, b, training=True, out=x)
    assert not torch.equal(rm, _params(torch.float32)[2])


def test_non_cpu_tensor_is_refused():
    x = torch.empty(SHAPE, device="meta")
    with pytest.raises(ValueError, match=r"\bx is on device meta.*CPU"):
        fastnorm.instance_norm(x)
    bias = torch.empty(C, device="meta")
    with pytest.raises(ValueError, match=r"\bbias is on device meta"):
        fastnorm.group_norm(_data(torch.float32, "contiguous"), 2, None, bias)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.int64, torch.bool, torch.complex64],
                         ids=str)
def test_unsupported_dtype_is_refused(dtype):
    x = torch.zeros(SHAPE, dtype=dtype)
    with pytest.raises(TypeError, match=r"\bx has dtype .*" + str(dtype).split(".")[-1]):
        fastnorm.rms_norm(x, SHAPE[-1])
    out = torch.zeros(SHAPE)
    rm = torch.zeros(C, dtype=dtype)
    unchanged = _all_unchanged(out)
    with pytest.raises(TypeError, match=r"running_mean"):
        fastnorm.batch_norm(_data(torch.float32, "contiguous"), running_mean=rm,
                            running_var=torch.ones(C), training=True, out=out)
    unchanged()


def test_sparse_tensor_is_refused():
    x = torch.eye(4).to_sparse()
    with pytest.raises(TypeError, match=r"\bx is a torch.sparse_coo tensor"):
        fastnorm.moments(x)


def test_wrong_out_tensor_is_refused_before_writing():
    x = _data(torch.float32, "contiguous")
    out = torch.zeros(SHAPE[:-1] + (SHAPE[-1] + 1,))
    unchanged = _all_unchanged(x, out)
    with pytest.raises(ValueError, match=r"\bout must have the shape"):
        fastnorm.layer_norm(x, SHAPE[-1], out=out)
    with pytest.raises(ValueError, match=r"\bout must have the dtype"):
        fastnorm.layer_norm(x, SHAPE[-1], out=torch.zeros(SHAPE, dtype=torch.float64))
    unchanged()


def test_tensor_in_a_list_argument_is_named():
    # sequences of arrays (normalize_image's batches) are looked into one level
    from fastnorm import _tensors
    seen = {}

    def takes_a_list(images, *, out=None):
        seen["images"] = images
        return images[0] * 2

    wrapped = _tensors.accepts_tensors(takes_a_list)
    y = wrapped([torch.ones(2), torch.zeros(2)])
    assert all(isinstance(a, np.ndarray) for a in seen["images"])
    assert type(y) is torch.Tensor and torch.equal(y, torch.full((2,), 2.0))
    with pytest.raises(ValueError, match=r"images\[1\] requires grad"):
        wrapped([torch.ones(2), torch.ones(2, requires_grad=True)])


# ---------------------------------------------------------------------------------------
# the hook itself

def test_public_functions_pickle_and_keep_their_signatures():
    import inspect
    for name in ("batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
                 "channel_layer_norm", "moments"):
        func = getattr(fastnorm, name)
        assert pickle.loads(pickle.dumps(func)) is func
        assert "num_threads" in inspect.signature(func).parameters
    assert pickle.loads(pickle.dumps(fastnorm.Moments.update)) is fastnorm.Moments.update


def test_importing_fastnorm_does_not_import_torch():
    code = ("import sys, numpy as np, fastnorm\n"
            "fastnorm.layer_norm(np.ones((2, 3)), 3)\n"
            "fastnorm.Moments().update(np.ones(3))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
