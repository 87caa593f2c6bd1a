"""fastnorm.torch.optimize: models made of every supported module type, and Hugging Face
transformers models built from their configs (random weights, no download), give the
original model's outputs within 1e-4 with the same state_dict; calls that fastnorm cannot
run (training with grad, unsupported dtypes, momentum=None, unknown subclasses) take the
module's own forward; report() says what was taken over and why the rest was not."""
import copy
import io
import os
import pickle
import warnings

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install "
                                            "torch==2.13.0)")
from torch import nn  # noqa: E402

import fastnorm.torch as fnt  # noqa: E402

C = 8

# torch's C++ exceptions (TORCH_CHECK) abort the process under a preloaded AddressSanitizer
# runtime (scripts/asan.sh): its __cxa_throw interceptor finds no real function to call
cpp_errors = pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                                reason="torch's C++ exceptions abort under AddressSanitizer's "
                                       "preloaded runtime")


def _randomize(model, seed=0):
    """Random affine parameters and running statistics of the norm modules (fresh ones have
    ones and zeros); the other layers keep their initialization."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if "norm" not in type(module).__name__.lower():
                continue
            tensors = list(module.named_parameters(recurse=False))
            tensors += list(module.named_buffers(recurse=False))
            for name, t in tensors:
                if not t.is_floating_point():
                    continue
                if name == "running_var":
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.5
                            + (1.0 if name == "weight" else 0.0))
    return model


def _x(shape, dtype=torch.float32, seed=1, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.7).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _taken(model):
    return {e.name: e for e in fnt.report(model).taken}


# module, input shape, channels_last input
MODULES = {
    "BatchNorm1d_2d_input": (lambda: nn.BatchNorm1d(C), (4, C), False),
    "BatchNorm1d_3d_input": (lambda: nn.BatchNorm1d(C), (4, C, 9), False),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(C), (2, C, 5, 7), False),
    "BatchNorm2d_channels_last": (lambda: nn.BatchNorm2d(C), (2, C, 5, 7), True),
    "BatchNorm2d_channels_last_no_running_stats": (
        lambda: nn.BatchNorm2d(C, track_running_stats=False), (2, C, 5, 7), True),
    "BatchNorm2d_no_affine": (lambda: nn.BatchNorm2d(C, affine=False), (2, C, 5, 7), False),
    "BatchNorm2d_no_running_stats": (lambda: nn.BatchNorm2d(C, track_running_stats=False),
                                     (2, C, 5, 7), False),
    "BatchNorm3d": (lambda: nn.BatchNorm3d(C), (2, C, 3, 4, 5), False),
    "InstanceNorm1d": (lambda: nn.InstanceNorm1d(C), (3, C, 11), False),
    "InstanceNorm1d_unbatched": (lambda: nn.InstanceNorm1d(C, affine=True), (C, 11), False),
    "InstanceNorm2d_affine": (lambda: nn.InstanceNorm2d(C, affine=True), (2, C, 6, 5), False),
    "InstanceNorm2d_channels_last": (lambda: nn.InstanceNorm2d(C, affine=True), (2, C, 6, 5),
                                     True),
    "InstanceNorm2d_unbatched": (lambda: nn.InstanceNorm2d(C), (C, 6, 5), False),
    "InstanceNorm2d_running_stats": (lambda: nn.InstanceNorm2d(C, track_running_stats=True),
                                     (2, C, 6, 5), False),
    "InstanceNorm3d": (lambda: nn.InstanceNorm3d(C, affine=True), (2, C, 3, 4, 5), False),
    "GroupNorm": (lambda: nn.GroupNorm(4, C), (2, C, 6, 5), False),
    "GroupNorm_channels_last": (lambda: nn.GroupNorm(2, C), (2, C, 6, 5), True),
    "GroupNorm_3d_input": (lambda: nn.GroupNorm(2, C, affine=False), (3, C, 10), False),
    "LayerNorm_last": (lambda: nn.LayerNorm(7), (2, 5, 7), False),
    "LayerNorm_chw": (lambda: nn.LayerNorm((C, 4, 5)), (2, C, 4, 5), False),
    "LayerNorm_chw_channels_last": (lambda: nn.LayerNorm((C, 4, 5)), (2, C, 4, 5), True),
    "LayerNorm_no_bias": (lambda: nn.LayerNorm(7, bias=False), (3, 7), False),
    "LayerNorm_no_affine": (lambda: nn.LayerNorm(7, elementwise_affine=False), (3, 7), False),
    "RMSNorm": (lambda: nn.RMSNorm(7, eps=1e-6), (2, 5, 7), False),
    "RMSNorm_eps_none": (lambda: nn.RMSNorm(7), (2, 5, 7), False),
    "RMSNorm_2d_no_affine": (lambda: nn.RMSNorm((5, 7), elementwise_affine=False),
                             (2, 5, 7), False),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(MODULES))
def test_each_module_type_matches_its_own_forward(name, dtype):
    make, shape, channels_last = MODULES[name]
    module = _randomize(make()).to(dtype).eval()
    fast = fnt.optimize(module)
    x = _x(shape, dtype, channels_last=channels_last)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            expected, got = module(x), fast(x)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4 if dtype == torch.float32 else
                                   1e-9, atol=1e-4 if dtype == torch.float32 else 1e-9)
    entry = _taken(fast)[""]
    if name == "BatchNorm2d_channels_last":      # left to PyTorch's kernel, as fast there
        assert entry.fastnorm_calls == 0 and len(entry.own_calls) == 1, entry
    else:
        assert entry.fastnorm_calls == 2 and not entry.own_calls, entry


class Every(nn.Module):
    """A model with every supported module type (and ops between them)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(C)
        self.in2 = nn.InstanceNorm2d(C, affine=True, track_running_stats=True)
        self.gn = nn.GroupNorm(4, C)
        self.ln_chw = nn.LayerNorm((C, 6, 6))
        self.bn3 = nn.BatchNorm3d(C)
        self.in3 = nn.InstanceNorm3d(C)
        self.bn1 = nn.BatchNorm1d(C)
        self.in1 = nn.InstanceNorm1d(C, affine=True)
        self.ln = nn.LayerNorm(36)
        self.rms = nn.RMSNorm(36)
        self.head = nn.Sequential(nn.Linear(C, C), nn.BatchNorm1d(C), nn.LayerNorm(C))

    def forward(self, x):
        x = torch.relu(self.bn2(self.conv(x)))
        x = self.in2(x) + self.gn(x)
        x = self.ln_chw(x)
        x = self.in3(self.bn3(x.unsqueeze(2))).squeeze(2)
        s = x.flatten(2)                                  # (N, C, 36)
        s = self.rms(self.ln(self.in1(self.bn1(s))))
        return self.head(s.mean(-1))


def _every(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return _randomize(Every(), seed).to(dtype).eval()


def test_every_module_type_model_same_outputs_and_state_dict():
    model = _every()
    x = _x((2, 3, 6, 6))
    fast = fnt.optimize(model)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert list(model.state_dict()) == list(fast.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, fast.state_dict()[key]), key
    assert [n for n, _ in model.named_modules()] == [n for n, _ in fast.named_modules()]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in fast.named_parameters()]
    taken = _taken(fast)
    norms = [n for n, m in model.named_modules() if fnt._kind_of(m) is not None]
    assert sorted(taken) == sorted(norms) and len(norms) == 12
    assert all(e.fastnorm_calls == 1 and not e.own_calls for e in taken.values()), taken
    # inplace=False left the model alone; inplace=True returns the model itself
    assert not fnt.report(model).taken
    assert fnt.optimize(model, inplace=True) is model and len(_taken(model)) == 12
    fresh = _every(seed=5)
    fast.load_state_dict(fresh.state_dict())            # the same keys: loads in place
    with torch.no_grad():
        torch.testing.assert_close(fast(x), fresh(x), rtol=1e-4, atol=1e-4)


def test_optimize_is_idempotent_and_survives_deepcopy_and_pickle():
    fast = fnt.optimize(fnt.optimize(_every()))
    x = _x((2, 3, 6, 6))
    with torch.no_grad():
        expected = fast(x)
    twin = copy.deepcopy(fast)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), expected, rtol=0, atol=0)
    assert all(e.fastnorm_calls == 2 for e in _taken(twin).values())     # the copy's own
    buf = io.BytesIO()
    torch.save(fast, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    with torch.no_grad():        # a pickled optimized model comes back as the plain model
        torch.testing.assert_close(loaded(x), expected, rtol=1e-4, atol=1e-4)
    again = fnt.optimize(loaded)
    assert len(_taken(again)) == 12
    assert pickle.loads(pickle.dumps(fast)) is not None


# ---------------------------------------------------------------------------------------
# fallback: the module's own forward

def test_training_with_grad_runs_own_forward_and_gradients_flow():
    model = _every().train()
    fast = fnt.optimize(model)
    x = _x((2, 3, 6, 6))
    expected = model(x)
    expected.sum().backward()
    got = fast(x)
    got.sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    for key, value in model.state_dict().items():      # running statistics updated alike
        torch.testing.assert_close(fast.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    for e in _taken(fast).values():
        assert e.fastnorm_calls == 0 and e.own_calls == {"gradient needed": 1}, e


def test_eval_with_grad_needed_runs_own_forward():
    model = _every()
    fast = fnt.optimize(model)
    x = _x((2, 3, 6, 6)).requires_grad_()
    got = fast(x)
    assert got.requires_grad
    got.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(e.fastnorm_calls == 0 for e in _taken(fast).values())


def test_training_without_grad_updates_running_stats_like_torch():
    for momentum in (0.1, None):
        model = _randomize(nn.Sequential(nn.BatchNorm2d(C, momentum=momentum),
                                         nn.InstanceNorm2d(C, track_running_stats=True,
                                                           momentum=momentum))).train()
        fast = fnt.optimize(model)
        for step in range(3):
            x = _x((3, C, 5, 4), seed=step)
            with torch.no_grad():
                torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(fast.state_dict()[key], value, rtol=1e-5, atol=1e-6,
                                       msg=key)
        assert int(fast[0].num_batches_tracked) == 3
        entries = _taken(fast)
        if momentum is None:     # BatchNorm's cumulative average: its own forward
            assert entries["0"].own_calls == {"training with momentum=None": 3}
        else:
            assert entries["0"].fastnorm_calls == 3
        assert entries["1"].fastnorm_calls == 3         # InstanceNorm: momentum None is 0


def test_training_batch_of_one_value_raises_torchs_own_error():
    fast = fnt.optimize(nn.BatchNorm1d(C).train())
    with torch.no_grad(), pytest.raises(ValueError, match="more than 1 value per channel"):
        fast(torch.ones(1, C))
    assert int(fast.num_batches_tracked) == 1        # counted once, as torch's forward does


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_unsupported_dtypes_run_own_forward(dtype):
    model = _every(dtype)
    fast = fnt.optimize(model)
    x = _x((2, 3, 6, 6), dtype)
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))
    for e in _taken(fast).values():
        assert e.fastnorm_calls == 0 and e.own_calls == {"dtype not float32/float64": 1}


@cpp_errors
def test_parameters_of_another_dtype_run_own_forward():
    module = _randomize(nn.LayerNorm(7)).double()
    fast = fnt.optimize(module)
    x = _x((3, 7), torch.float32)
    with torch.no_grad(), pytest.raises(RuntimeError):
        module(x)                            # torch's own error, which the fallback keeps
    with torch.no_grad(), pytest.raises(RuntimeError):
        fast(x)
    assert _taken(fast)[""].own_calls == {"parameters of another dtype or device": 1}


@cpp_errors
def test_wrong_input_shape_raises_torchs_own_error():
    fast = fnt.optimize(nn.LayerNorm(7))
    with torch.no_grad(), pytest.raises(RuntimeError):
        fast(torch.ones(3, 6))
    assert _taken(fast)[""].own_calls == {"input of another shape": 1}


def test_wrong_input_dims_raises_torchs_own_error():
    fast = fnt.optimize(nn.BatchNorm2d(C).eval())
    with torch.no_grad(), pytest.raises(ValueError, match="expected 4D input"):
        fast(torch.ones(3, C))


class MyLayerNorm(nn.LayerNorm):
    """A subclass with a formula of its own: it must be left alone."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 1)).permute(0, 2, 1)


class MyRMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * (1 + self.weight)


def test_unknown_subclasses_and_classes_are_left_alone_with_the_reason():
    model = nn.Sequential(MyLayerNorm(C), MyRMSNorm(), nn.LayerNorm(C), nn.Linear(C, C),
                          nn.LocalResponseNorm(2))
    fast = fnt.optimize(model)
    x = _x((2, C, C))
    with torch.no_grad():
        torch.testing.assert_close(fast(x.clone()), model(x.clone()), rtol=1e-5, atol=1e-5)
    rep = fnt.report(fast)
    assert [e.name for e in rep.taken] == ["2"]
    left = {e.name: e.reason for e in rep.left_alone}
    assert set(left) == {"0", "1", "4"}          # Linear is not norm-like: not listed
    assert "subclass of torch.nn.LayerNorm" in left["0"]
    assert "not a normalization class fastnorm knows" in left["1"]
    assert "does not implement" in left["4"]
    text = str(rep)
    assert "1 module(s) taken over, 3 left alone" in text and "MyLayerNorm" in text


def test_report_on_a_model_not_optimized_and_a_forward_replaced_by_other_code():
    model = nn.Sequential(nn.LayerNorm(C), nn.BatchNorm1d(C))
    model[1].forward = lambda x: x
    rep = fnt.report(model)
    assert not rep.taken
    reasons = {e.name: e.reason for e in rep.left_alone}
    assert "not optimized" in reasons["0"] and "replaced on the instance" in reasons["1"]
    fast = fnt.optimize(model)
    assert [e.name for e in fnt.report(fast).taken] == ["0"]


def test_optimize_argument_errors():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fnt.optimize(lambda x: x)
    with pytest.raises(TypeError, match="inplace must be a bool"):
        fnt.optimize(nn.LayerNorm(3), inplace=1)


# ---------------------------------------------------------------------------------------
# Hugging Face transformers models, built from small configs

def _transformers():
    return pytest.importorskip("transformers", reason="transformers is not installed (pip "
                                                      "install 'fastnorm-kernels[test]')")


def _hf_model(name):
    tr = _transformers()
    torch.manual_seed(0)
    if name == "resnet":
        config = tr.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                 layer_type="bottleneck", num_labels=10)
        model, x = tr.ResNetForImageClassification(config), _x((2, 3, 32, 32))
    elif name == "convnext":
        config = tr.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2,
                                   num_labels=10)
        model, x = tr.ConvNextForImageClassification(config), _x((2, 3, 32, 32))
    elif name == "vit":
        config = tr.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, image_size=32, patch_size=8, num_labels=10)
        model, x = tr.ViTForImageClassification(config), _x((2, 3, 32, 32))
    elif name in ("llama", "mistral", "qwen2", "gemma"):
        cls = {"llama": (tr.LlamaConfig, tr.LlamaForCausalLM),
               "mistral": (tr.MistralConfig, tr.MistralForCausalLM),
               "qwen2": (tr.Qwen2Config, tr.Qwen2ForCausalLM),
               "gemma": (tr.GemmaConfig, tr.GemmaForCausalLM)}[name]
        config = cls[0](hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2, vocab_size=101,
                        head_dim=16, max_position_embeddings=64)
        model = cls[1](config)
        x = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(3))
    else:
        raise ValueError(name)
    return _randomize(model).eval(), x


def _logits(model, x):
    out = model(x)
    return out.logits


@pytest.mark.parametrize("name", ["resnet", "convnext", "vit", "llama", "mistral", "qwen2",
                                  "gemma"])
def test_transformers_model_same_outputs_and_state_dict(name):
    model, x = _hf_model(name)
    fast = fnt.optimize(model)
    with torch.inference_mode():
        expected, got = _logits(model, x), _logits(fast, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    sd, fast_sd = model.state_dict(), fast.state_dict()
    assert list(sd) == list(fast_sd)
    assert all(torch.equal(sd[k], fast_sd[k]) for k in sd)
    rep = fnt.report(fast)
    assert rep.taken and all(e.fastnorm_calls >= 1 and not e.own_calls for e in rep.taken), \
        str(rep)
    assert not rep.left_alone, str(rep)


def _timm_norm_module():
    """timm.layers.norm (timm's real classes) without running timm/__init__.py, which imports
    torchvision (torchvision does not import beside torch 2.13.0 here); None without timm."""
    import importlib.util
    import os
    import sys
    import types
    spec = importlib.util.find_spec("timm")
    if spec is None:
        return None
    if "timm" in sys.modules:
        return importlib.import_module("timm.layers.norm")
    root = os.path.dirname(spec.origin)
    saved = {}
    for name, path in (("timm", root), ("timm.layers", os.path.join(root, "layers"))):
        package = types.ModuleType(name)
        package.__path__ = [path]
        saved[name] = sys.modules[name] = package
    try:
        return importlib.import_module("timm.layers.norm")
    finally:                     # leave no half-imported timm behind
        for name in list(sys.modules):
            if name == "timm" or name.startswith("timm."):
                del sys.modules[name]


def _table_classes():
    """The classes of fastnorm.torch's table of other libraries that are installed."""
    import importlib
    found = []
    timm_norm = None
    for (module, qualname), kind in fnt._OTHER_TYPES.items():
        try:
            if module == "timm.layers.norm":
                timm_norm = timm_norm or _timm_norm_module()
                if timm_norm is None:
                    continue
                found.append((getattr(timm_norm, qualname), kind))
            else:
                found.append((importlib.import_module(module).__dict__[qualname], kind))
        except (ImportError, KeyError, AttributeError):
            continue
    return found


def _instances_and_inputs(cls, kind):
    """Instances of a table class (each constructor form it has) and inputs for each."""
    nchw = [_x((2, C, 5, 4)), _x((2, C, 5, 4), channels_last=True)]
    last = [_x((3, 4, C)), _x((2, 5, 4, C)).permute(0, 2, 1, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "ConvNext" in cls.__name__:
            return [(cls(C, eps=1e-6, data_format="channels_first"), nchw),
                    (cls(C, eps=1e-6, data_format="channels_last"), last)]
        if kind is fnt._CHANNEL_LAYER_NORM:
            return [(cls(C, eps=1e-6), nchw)]
        if kind is fnt._GROUP_NORM:
            return [(cls(C, num_groups=2) if cls.__name__ == "GroupNorm" else cls(C), nchw)]
        return [(cls(C, eps=1e-6), last)]


def test_every_installed_table_class_matches_its_own_forward():
    _transformers()
    classes = _table_classes()
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls, _ in classes}
    expected = {".".join(key) for key in fnt._OTHER_TYPES if not key[0].startswith("timm.")}
    if _timm_norm_module() is not None:
        expected |= {".".join(key) for key in fnt._OTHER_TYPES}
    assert names == expected, sorted(expected - names)
    for cls, kind in classes:
        for module, xs in _instances_and_inputs(cls, kind):
            module = _randomize(module).eval()
            fast = fnt.optimize(module)
            for x in xs:
                with torch.no_grad():
                    torch.testing.assert_close(fast(x), module(x), rtol=1e-5, atol=1e-5,
                                               msg=f"{cls.__module__}.{cls.__name__}")
            assert _taken(fast)[""].fastnorm_calls == len(xs), (cls, fnt.report(fast))


def test_parameter_changes_after_optimize_are_seen():
    fast = fnt.optimize(_randomize(nn.LayerNorm(7)))
    x = _x((3, 7))

    def check():
        with torch.no_grad():
            expected = torch.nn.functional.layer_norm(x, (7,), fast.weight, fast.bias, fast.eps)
            torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)

    check()
    fast.weight.data = torch.full((7,), 2.0)             # new storage
    check()
    with torch.no_grad():
        fast.weight.mul_(3.0)                            # in place
        fast.bias.add_(1.0)
    check()
    fast.weight = nn.Parameter(torch.full((7,), 5.0))    # a new parameter
    check()
    fast.load_state_dict(_randomize(nn.LayerNorm(7), seed=9).state_dict())
    check()
    fast.double()
    x = x.double()
    check()
    assert _taken(fast)[""].fastnorm_calls == 6
