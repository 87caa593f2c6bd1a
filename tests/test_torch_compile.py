"""The custom ops torch.ops.fastnorm.* (torch.library.opcheck on each) and torch.compile of
an optimized model with fullgraph=True (no graph break) giving the eager model's outputs."""
import os

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install "
                                            "torch==2.13.0)")
# A Python exception that crosses torch's C++ frames (the dispatcher around a custom op,
# torch.compile's internals) is rethrown there as a C++ exception, which aborts the process
# under the preloaded AddressSanitizer runtime of scripts/asan.sh (its __cxa_throw
# interceptor finds no real function to call). The eager paths, which run the same kernels,
# are tested under it by test_torch_tensors.py and test_torch_optimize.py.
pytestmark = pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                                reason="C++ exceptions abort under AddressSanitizer's "
                                       "preloaded runtime")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fastnorm.torch as fnt  # noqa: E402

C = 8
OP_NAMES = ("batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
            "channel_layer_norm", "moments")


def _x(shape, dtype, channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _vec(dtype, seed, positive=False):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(C, generator=g, dtype=torch.float64)
    return (v + 0.5 if positive else v - 0.5).to(dtype)


def _samples(dtype, channels_last):
    """(op name, args, torch reference) for every op."""
    x = _x((2, C, 5, 6), dtype, channels_last)
    w, b = _vec(dtype, 1, True), _vec(dtype, 2)
    rm, rv = _vec(dtype, 3), _vec(dtype, 4, True)
    lw = _x((5, 6), dtype, seed=5)
    return [
        ("batch_norm", (x, rm, rv, w, b, 1e-5), F.batch_norm(x, rm, rv, w, b, False, 0.1, 1e-5)),
        ("batch_norm", (x, None, None, None, None, 1e-3),
         F.batch_norm(x, None, None, None, None, True, 0.1, 1e-3)),
        ("instance_norm", (x, None, None, w, b, True, 1e-5),
         F.instance_norm(x, None, None, w, b, True, 0.1, 1e-5)),
        ("instance_norm", (x, rm, rv, None, None, False, 1e-5),
         F.instance_norm(x, rm, rv, None, None, False, 0.1, 1e-5)),
        ("group_norm", (x, 4, w, b, 1e-5), F.group_norm(x, 4, w, b, 1e-5)),
        ("layer_norm", (x, [5, 6], lw, None, 1e-5), F.layer_norm(x, [5, 6], lw, None, 1e-5)),
        ("layer_norm", (x, [C, 5, 6], None, None, 1e-5), F.layer_norm(x, [C, 5, 6])),
        ("rms_norm", (x, [6], lw[0], 1e-6), F.rms_norm(x, [6], lw[0], 1e-6)),
        ("rms_norm", (x, [5, 6], None, None), F.rms_norm(x, [5, 6])),
        ("channel_layer_norm", (x, w, b, 1e-6),
         F.layer_norm(x.permute(0, 2, 3, 1), [C], w, b, 1e-6).permute(0, 3, 1, 2)),
        ("moments", (x, [0, 2, 3], 1.0, False),
         tuple(reversed(torch.var_mean(x, dim=(0, 2, 3), correction=1)))),
        ("moments", (x, None, 0.0, True),
         tuple(reversed(torch.var_mean(x, dim=(0, 1, 2, 3), keepdim=True, correction=0)))),
    ]


def test_every_op_is_registered():
    for name in OP_NAMES:
        assert hasattr(torch.ops.fastnorm, name), name


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_opcheck_and_results(dtype, channels_last):
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    checked = set()
    for name, args, expected in _samples(dtype, channels_last):
        op = getattr(torch.ops.fastnorm, name).default
        torch.library.opcheck(op, args)
        got = op(*args)
        torch.testing.assert_close(got, expected, **tol, msg=name)
        if name != "moments" and channels_last and name != "layer_norm":
            assert got.is_contiguous(memory_format=torch.channels_last), name
        checked.add(name)
    assert checked == set(OP_NAMES)


def test_instance_norm_op_refuses_running_stats_to_update():
    x = _x((2, C, 4, 4), torch.float32)
    with pytest.raises(ValueError, match="does not update running statistics"):
        torch.ops.fastnorm.instance_norm(x, torch.zeros(C), torch.ones(C), None, None, True,
                                         1e-5)


class Net(nn.Module):
    """Every module type fastnorm takes over, between convolutions and linear layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.bn = nn.BatchNorm2d(C)
        self.inorm = nn.InstanceNorm2d(C, affine=True)
        self.gn = nn.GroupNorm(2, C)
        self.ln_chw = nn.LayerNorm((C, 6, 6))
        self.bn1 = nn.BatchNorm1d(C)
        self.ln = nn.LayerNorm(36)
        self.rms = nn.RMSNorm(36)
        self.fc = nn.Linear(36, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.ln_chw(self.gn(self.inorm(x)))
        s = self.rms(self.ln(self.bn1(x.flatten(2))))
        return self.fc(s)


def _fastnorm_ops_in(gm):
    """The fastnorm ops called by a dynamo graph (as 'fastnorm.<name>')."""
    return {str(n.target).removesuffix(".default") for n in gm.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("fastnorm.")}


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_compile_fullgraph_runs_the_custom_ops(channels_last):
    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 1.5)
    fast = fnt.optimize(model)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend=backend)
    x = _x((2, 3, 6, 6), torch.float32, channels_last)
    with torch.no_grad():
        expected = model(x)
        got = compiled(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert len(graphs) == 1
    found = _fastnorm_ops_in(graphs[0])
    assert found == {"fastnorm.batch_norm", "fastnorm.instance_norm", "fastnorm.group_norm",
                     "fastnorm.layer_norm", "fastnorm.rms_norm"}, found


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_backends(backend):
    # norm modules only: inductor has no kernel of its own to build (a short compile)
    torch.manual_seed(1)
    model = nn.Sequential(nn.BatchNorm2d(C), nn.GroupNorm(2, C), nn.InstanceNorm2d(C),
                          nn.LayerNorm(6)).eval()
    fast = fnt.optimize(model)
    x = _x((2, C, 5, 6), torch.float32)
    with torch.no_grad():
        expected = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend=backend)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)


def test_compiled_training_step_takes_torchs_own_path():
    torch.manual_seed(2)
    model = Net().train()
    fast = fnt.optimize(model)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    x = _x((2, 3, 6, 6), torch.float32)
    ref = model(x)
    got = compiled(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    got.sum().backward()
    assert fast.conv.weight.grad is not None
