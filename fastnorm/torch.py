"""PyTorch adapter: CPU tensors in and out of every public function, `optimize(model)` for
CPU inference, and (fastnorm._torch_ops) the kernels as torch.library custom ops. The
forwards optimize binds on modules are in fastnorm._torch_forwards.

Tensors and arrays. A CPU tensor becomes the NumPy view `t.numpy()` of its memory (zero
copy, strides kept, so channels_last tensors stay native) and every array a function returns
becomes a tensor again through `torch.from_numpy` (zero copy); an `out=` tensor, or a
running-statistics tensor, is written in place and `out=t` returns `t` itself. Writes through
a NumPy view do not bump a tensor's autograd version counter, so the adapter bumps the
counters of the tensors it wrote. fastnorm has no autograd: a tensor that requires grad while
grad mode is on is refused (as are non-CPU tensors and dtypes NumPy lacks), before anything
is written.

Modules. `optimize(model)` binds a new forward on each norm module whose exact type it
knows (DESIGN.md section 11): the call runs fastnorm when it is eligible (CPU, float32 or
float64, parameters of the input's dtype, no gradient needed, and for BatchNorm in training
a momentum that is a number) and the module's own forward otherwise. In eager mode the plans
run directly on the tensors' memory (no dispatcher in the way); under torch.compile the
functional custom ops `torch.ops.fastnorm.*` run instead, and the calls that update running
statistics take the module's own forward. Parameters, buffers, the module tree and the
state_dict stay as they were. `report(model)` says which modules were taken over (and how
many calls ran fastnorm) and why the other norm-like modules were left alone.
"""
import copy
import types
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from . import _validate as V
from . import _torch_ops
from ._torch_forwards import (_STATE, _Takeover, _bump_versions, _eager_forward, _params,
                              _running_params, _weight_only)
from . import _torch_forwards as F

ops = _torch_ops.OPS       # torch.ops.fastnorm

__all__ = ["optimize", "report", "Report", "ops"]

# ---------------------------------------------------------------------------------------
# tensors <-> arrays

# torch dtypes NumPy has; the plans' own checks refuse the ones fastnorm does not compute in
# (integers, bool, complex) with their usual message. Others (bfloat16, ...): TypeError here.
_NUMPY_DTYPES = {getattr(torch, name): np.dtype(name) for name in (
    "float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool",
    "complex64", "complex128", "uint16", "uint32", "uint64") if hasattr(torch, name)}


def _tensor_array(t, name, grad_enabled):
    """The NumPy view of a checked tensor argument."""
    V.tensor(t, name, grad_enabled, _NUMPY_DTYPES, torch.strided)
    try:
        return (t.detach() if t.requires_grad else t).numpy()
    except (RuntimeError, TypeError) as exc:        # conjugate/negative-bit views and the like
        raise TypeError(f"{name}: this tensor has no NumPy view ({exc}); pass "
                        f"{name}.resolve_conj().resolve_neg()") from exc


_PLAIN = frozenset({type(None), bool, int, float, str, np.ndarray})


class _Translation:
    """The arrays standing for the tensors of one call, and back."""

    __slots__ = ("grad_enabled", "arrays", "tensors", "given")

    def __init__(self, grad_enabled):
        self.grad_enabled = grad_enabled
        self.arrays = {}           # id(tensor) -> array (the same tensor twice: one array)
        self.tensors = {}          # id(array) -> (array, tensor), to hand back out=t itself
        self.given = ()            # arrays the caller passed, returned as they are

    def to_array(self, value, name):
        cls = type(value)
        if cls in _PLAIN:
            if cls is np.ndarray:
                self.given += (value,)
            return value
        if cls is torch.Tensor or isinstance(value, torch.Tensor):
            arr = self.arrays.get(id(value))
            if arr is None:
                arr = self.arrays[id(value)] = _tensor_array(value, name, self.grad_enabled)
                self.tensors[id(arr)] = (arr, value)
            return arr
        if cls is torch.dtype:
            return _NUMPY_DTYPES.get(value, value)
        if cls in (list, tuple) and any(isinstance(v, torch.Tensor) for v in value):
            return cls(self.to_array(v, f"{name}[{i}]") for i, v in enumerate(value))
        if isinstance(value, np.ndarray):
            self.given += (value,)
        return value

    def to_tensor(self, result):
        if isinstance(result, np.ndarray):
            pair = self.tensors.get(id(result))
            if pair is not None and pair[0] is result:
                return pair[1]
            if any(result is g for g in self.given):
                return result
            return torch.from_numpy(_writable(result))
        if isinstance(result, np.generic):
            return torch.from_numpy(np.array(result))
        if type(result) is tuple:
            return tuple(self.to_tensor(r) for r in result)
        return result


def _writable(arr):
    # torch.from_numpy warns on read-only arrays (the plans return new, writable ones)
    return arr if arr.flags.writeable else arr.copy()



def call_with_tensors(func, names, writes, args, kwargs):
    """Run `func` (a public fastnorm function) on the NumPy views of the tensors among
    `args`/`kwargs`; array results come back as tensors. `names`: func's positional
    parameter names (for messages); `writes`: the parameters it may write in place."""
    tr = _Translation(torch.is_grad_enabled())
    n = len(names)
    new_args = [tr.to_array(a, names[i] if i < n else f"argument {i + 1}")
                for i, a in enumerate(args)]
    new_kwargs = {k: tr.to_array(v, k) for k, v in kwargs.items()} if kwargs else kwargs
    result = func(*new_args, **new_kwargs)
    if writes:
        written = [v for k, v in zip(names, args) if k in writes]
        written += [v for k, v in kwargs.items() if k in writes]
        _bump_versions([t for t in written if isinstance(t, torch.Tensor)])
    return tr.to_tensor(result)


# ---------------------------------------------------------------------------------------
# module takeover: which calls are eligible under torch.compile (the eager checks and
# forwards: fastnorm._torch_forwards)

_FLOATS = (torch.float32, torch.float64)


def _ineligible(module, args, kwargs, params):
    """None when the call `module(*args, **kwargs)` can run fastnorm, else the reason (a
    short string). Traceable by torch.compile (no side effects)."""
    if len(args) != 1 or kwargs:
        return "called with more than one argument"
    x = args[0]
    if not isinstance(x, torch.Tensor) or type(x) not in (torch.Tensor, nn.Parameter):
        return "input is not a plain tensor"
    if x.device.type != "cpu":
        return "input is not on the CPU"
    if x.layout != torch.strided:
        return "input is not a dense tensor"
    if x.dtype not in _FLOATS:
        return "dtype not float32/float64"
    grad = torch.is_grad_enabled()
    if grad and x.requires_grad:
        return "gradient needed"
    for p in params:
        if p is not None:
            if p.dtype != x.dtype or p.device.type != "cpu":
                return "parameters of another dtype or device"
            if grad and p.requires_grad:
                return "gradient needed"
    return None


# ---------------------------------------------------------------------------------------
# the table of module types, matched exactly (a subclass may normalize another axis)

class _Kind(NamedTuple):
    name: str                  # what report() shows
    run: object                # eager path: a tensor, or the reason for the own forward
    compiled: object           # torch.compile path: a tensor, or None for the own forward
    params: object = _params   # the tensors that must share the input's dtype
    static: object = None      # module -> reason it cannot be taken over, or None


_BATCH_NORM = _Kind("batch_norm", F._batch_norm_eager, F._batch_norm_compiled, _running_params)
_INSTANCE_NORM = _Kind("instance_norm", F._instance_norm_eager, F._instance_norm_compiled,
                       _running_params)
_GROUP_NORM = _Kind("group_norm", F._group_norm_eager, F._group_norm_compiled)
_LAYER_NORM = _Kind("layer_norm", F._layer_norm_eager, F._layer_norm_compiled)
_RMS_NORM = _Kind("rms_norm", F._rms_norm_eager, F._rms_norm_compiled, _weight_only)
_LAST_DIM_RMS = _Kind("rms_norm", F._last_dim_rms_eager, F._last_dim_rms_compiled, _weight_only)
_GEMMA_RMS = _Kind("rms_norm (1 + weight)", F._gemma_rms_eager, F._gemma_rms_compiled,
                   _weight_only)
_CHANNEL_LAYER_NORM = _Kind("channel_layer_norm", F._channel_layer_norm_eager,
                            F._channel_layer_norm_compiled)
_CONVNEXT = _Kind("layer_norm or channel_layer_norm (by data_format)", F._convnext_eager,
                  F._convnext_compiled, static=F._convnext_static)

_TORCH_TYPES = {
    nn.BatchNorm1d: _BATCH_NORM, nn.BatchNorm2d: _BATCH_NORM, nn.BatchNorm3d: _BATCH_NORM,
    nn.InstanceNorm1d: _INSTANCE_NORM, nn.InstanceNorm2d: _INSTANCE_NORM,
    nn.InstanceNorm3d: _INSTANCE_NORM,
    nn.GroupNorm: _GROUP_NORM, nn.LayerNorm: _LAYER_NORM,
}
if hasattr(nn, "RMSNorm"):
    _TORCH_TYPES[nn.RMSNorm] = _RMS_NORM

# Classes of other libraries, by (module, qualified name) so that neither is imported here.
# Each one's forward has been read and its formula is the kind's (tests/test_torch_optimize.py
# compares each one that is installed with its own forward).
_T = "transformers.models."
_OTHER_TYPES = {
    (_T + "convnext.modeling_convnext", "ConvNextLayerNorm"): _CONVNEXT,
    (_T + "convnextv2.modeling_convnextv2", "ConvNextV2LayerNorm"): _CONVNEXT,
    (_T + "llama.modeling_llama", "LlamaRMSNorm"): _LAST_DIM_RMS,
    (_T + "mistral.modeling_mistral", "MistralRMSNorm"): _LAST_DIM_RMS,
    (_T + "qwen2.modeling_qwen2", "Qwen2RMSNorm"): _LAST_DIM_RMS,
    (_T + "qwen3.modeling_qwen3", "Qwen3RMSNorm"): _LAST_DIM_RMS,
    (_T + "gemma.modeling_gemma", "GemmaRMSNorm"): _GEMMA_RMS,
    ("timm.layers.norm", "LayerNorm"): _LAYER_NORM,
    ("timm.layers.norm", "LayerNorm2d"): _CHANNEL_LAYER_NORM,
    ("timm.layers.norm", "RmsNorm"): _RMS_NORM,
    ("timm.layers.norm", "GroupNorm"): _GROUP_NORM,
    ("timm.layers.norm", "GroupNorm1"): _GROUP_NORM,
}

# types whose instances are normalizations (for report(): the ones left alone)
_NORM_BASES = tuple(t for t in (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None),
    nn.LocalResponseNorm, nn.CrossMapLRN2d) if t is not None)


def _kind_of(module):
    cls = type(module)
    kind = _TORCH_TYPES.get(cls)
    if kind is None:
        kind = _OTHER_TYPES.get((cls.__module__, cls.__qualname__))
    return kind


def _why_not(module):
    """Why a norm-like module that optimize does not take over is left alone (None: not
    norm-like)."""
    cls = type(module)
    if isinstance(module, nn.modules.lazy.LazyModuleMixin):
        return "a lazy module not yet initialized: run the model once, then optimize it"
    for base in _TORCH_TYPES:
        if isinstance(module, base):
            return (f"a subclass of torch.nn.{base.__name__} (fastnorm matches exact types: a "
                    f"subclass may normalize another axis or use another formula)")
    if isinstance(module, _NORM_BASES):
        return "a normalization fastnorm does not implement"
    if "norm" in cls.__name__.lower():
        return "not a normalization class fastnorm knows"
    return None


def _make_forward(kind):
    params, compiled = kind.params, kind.compiled

    def forward(self, *args, **kwargs):
        if torch.compiler.is_compiling():
            if _ineligible(self, args, kwargs, params(self)) is None:
                y = compiled(self, args[0])
                if y is not None:
                    return y
            return type(self).forward(self, *args, **kwargs)
        return _eager_forward(self, kind, args, kwargs)

    forward.__name__ = "forward"
    forward.__qualname__ = f"fastnorm_{kind.name.split()[0]}_forward"
    return forward


_FORWARDS = {kind: _make_forward(kind) for kind in
             set(_TORCH_TYPES.values()) | set(_OTHER_TYPES.values())}
_FORWARD_FUNCTIONS = frozenset(_FORWARDS.values())


def _instance_forward(module):
    """The function bound as forward on the instance: None when there is none, or when it is
    the class's own (a pickled optimized module comes back so: bound methods pickle by
    name)."""
    bound = module.__dict__.get("forward")
    if bound is None or getattr(bound, "__func__", None) is type(module).forward:
        return None
    return getattr(bound, "__func__", bound)


def _taken_over(module):
    return _instance_forward(module) in _FORWARD_FUNCTIONS


def _bind(module, kind):
    module.__dict__[_STATE] = _Takeover(kind)
    module.__dict__["forward"] = types.MethodType(_FORWARDS[kind], module)


def optimize(model, *, inplace=False):
    """Make the norm modules of `model` run fastnorm kernels whenever a call is eligible.

    Modules of the exact types fastnorm knows (torch.nn BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d,
    GroupNorm, LayerNorm, RMSNorm; the LayerNorms and RMSNorms of timm and Hugging Face
    transformers listed in README.md) get a new forward bound on the instance: a call on a
    CPU float32/float64 input whose parameters share its dtype, with no gradient needed,
    runs fastnorm (eagerly on the tensors' memory; under torch.compile through the custom ops
    torch.ops.fastnorm.*); any other call runs the module's own forward. Parameters, buffers,
    the module tree and the state_dict are unchanged. inplace=False works on a deep copy.
    Returns the model; `report(model)` says what was taken over and why the rest was not.

    Parameters
    ----------
    model : torch.nn.Module
        The model (or a single norm module).
    inplace : bool
        Change `model` itself instead of a deep copy.

    Returns
    -------
    torch.nn.Module
        The optimized model.

    Examples
    --------
    >>> import torch
    >>> import fastnorm.torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.BatchNorm2d(8)).eval()
    >>> fast = fastnorm.torch.optimize(model)
    >>> x = torch.randn(2, 3, 4, 4)
    >>> with torch.inference_mode():
    ...     print(torch.allclose(fast(x), model(x), atol=1e-5))
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    for _, module in model.named_modules():
        kind = _kind_of(module)
        if kind is None or _instance_forward(module) is not None:
            continue
        if kind.static is not None and kind.static(module) is not None:
            continue
        _bind(module, kind)
    return model


# ---------------------------------------------------------------------------------------
# report

class Entry(NamedTuple):
    name: str                  # the module's name in the model ("" for the model itself)
    type: str                  # its class
    kind: str                  # the fastnorm op(s) it runs; "" when left alone
    reason: str                # why it was left alone; "" when taken over
    fastnorm_calls: int        # eager calls that ran fastnorm
    own_calls: dict            # reason -> eager calls that ran the module's own forward


class Report(NamedTuple):
    """What optimize did with each norm-like module of a model: `taken` and `left_alone`
    (lists of Entry). str() gives a table."""
    taken: list
    left_alone: list

    def __str__(self):
        lines = [f"fastnorm.torch: {len(self.taken)} module(s) taken over, "
                 f"{len(self.left_alone)} left alone"]
        if self.taken:
            lines.append("taken over (eager calls: fastnorm / own forward):")
            for e in self.taken:
                own = sum(e.own_calls.values())
                why = "; ".join(f"{r}: {n}" for r, n in sorted(e.own_calls.items()))
                lines.append(f"  {e.name or '(model)'}  {e.type}  -> {e.kind}  "
                             f"calls {e.fastnorm_calls} / {own}" + (f"  ({why})" if why else ""))
        if self.left_alone:
            lines.append("left alone:")
            for e in self.left_alone:
                lines.append(f"  {e.name or '(model)'}  {e.type}: {e.reason}")
        return "\n".join(lines)


def report(model):
    """Which modules of `model` optimize took over (with their eager call counts: calls that
    ran fastnorm, calls that ran the module's own forward and why) and which norm-like
    modules it left alone, and why. On a model that was not optimized, the modules it would
    take over are listed as left alone with the reason "not optimized".

    Parameters
    ----------
    model : torch.nn.Module
        A model, optimized or not.

    Returns
    -------
    Report
        `taken` and `left_alone`, lists of Entry; ``str(report)`` is a table.

    Examples
    --------
    >>> import torch
    >>> import fastnorm.torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    >>> fast = fastnorm.torch.optimize(model)
    >>> with torch.inference_mode():
    ...     y = fast(torch.randn(3, 4))
    >>> entry, = fastnorm.torch.report(fast).taken
    >>> print(entry.name, entry.type, entry.fastnorm_calls)
    1 LayerNorm 1
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    taken, left = [], []
    for name, module in model.named_modules():
        cls = type(module).__name__
        if _taken_over(module):
            state = module.__dict__[_STATE]
            taken.append(Entry(name, cls, state.kind.name, "", state.fastnorm_calls,
                               dict(state.own_calls)))
            continue
        kind = _kind_of(module)
        if kind is not None:
            if _instance_forward(module) is not None:
                reason = "its forward is replaced on the instance (by other code)"
            elif kind.static is not None and kind.static(module) is not None:
                reason = kind.static(module)
            else:
                reason = "not optimized (fastnorm.torch.optimize takes it over)"
        else:
            reason = _why_not(module)
            if reason is None:
                continue
        left.append(Entry(name, cls, "", reason, 0, {}))
    return Report(taken, left)