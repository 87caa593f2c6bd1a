"""The forwards that fastnorm.torch.optimize binds on norm modules: which calls are eligible,
the state a taken-over module carries (call counts, NumPy views of its parameters), and per
kind of module an eager path (the plans on the tensors' memory) and a compiled path (the
custom ops torch.ops.fastnorm.*, under torch.compile)."""
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import torch
from numpy.typing import NDArray
from torch import nn

from . import _norms
from . import _torch_ops

ops = _torch_ops.OPS       # torch.ops.fastnorm

Array = NDArray[Any]

def _bump_versions(tensors: Iterable[torch.Tensor | None]) -> None:
    """Tell autograd that these tensors were written (in place, through NumPy)."""
    for t in tensors:
        if t is not None and not t.is_inference():
            torch.autograd.graph.increment_version(t)


# ---------------------------------------------------------------------------------------
# module takeover: which calls are eligible

def _eager_ineligible(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """fastnorm.torch._ineligible's checks of the input for the eager path, with cheaper
    attributes."""
    if len(args) != 1 or kwargs:
        return "called with more than one argument"
    x = args[0]
    cls = type(x)
    if cls is not torch.Tensor and cls is not nn.Parameter:
        return "input is not a plain tensor"
    if not x.is_cpu:
        return "input is not on the CPU"
    if x.layout is not torch.strided:
        return "input is not a dense tensor"
    dtype = x.dtype
    if dtype is not torch.float32 and dtype is not torch.float64:
        return "dtype not float32/float64"
    if x.requires_grad and torch.is_grad_enabled():
        return "gradient needed"
    return None


def _array(t: torch.Tensor) -> Array:
    """The NumPy view of a tensor that is known to be eligible."""
    a: Array = (t.detach() if t.requires_grad else t).numpy()
    return a


def _tensor(y: Array) -> torch.Tensor:
    return torch.from_numpy(y)


class _Takeover:
    """What optimize attached to a module: its kind, the eager call counts, and the NumPy
    views of its parameters (rebuilt when a parameter or its storage is replaced)."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        self.fastnorm_calls = 0
        self.own_calls: dict[str, int] = {}      # reason -> count
        self._views: list[tuple[Any, int, Array] | None] = []   # per slot: tensor, data_ptr, array

    def __getstate__(self) -> dict[str, Any]:        # copies and pickles drop the views of the old tensors
        state = self.__dict__.copy()
        state["_views"] = []
        return state

    def own(self, reason: str) -> None:
        self.own_calls[reason] = self.own_calls.get(reason, 0) + 1

    def arrays(self, tensors: Sequence[Any], dtype: Any) -> list[Array | None] | str:
        """The NumPy views of the parameter tensors (None stays None), or the reason they
        cannot be used with an input of `dtype`."""
        views = self._views
        if len(views) != len(tensors):
            views[:] = [None] * len(tensors)
        grad = None
        out: list[Array | None] = []
        for i, t in enumerate(tensors):
            if t is None:
                out.append(None)
                continue
            if t.dtype is not dtype or not t.is_cpu:
                return "parameters of another dtype or device"
            if t.requires_grad:
                if grad is None:
                    grad = torch.is_grad_enabled()
                if grad:
                    return "gradient needed"
            entry = views[i]
            ptr = t.data_ptr()
            if entry is None or entry[0] is not t or entry[1] != ptr:
                entry = views[i] = (t, ptr, _array(t))
            out.append(entry[2])
        return out


_STATE = "_fastnorm_takeover"     # the module attribute holding its _Takeover


def _eager_forward(module: nn.Module, kind: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The eager call of a taken-over module: kind.run on the NumPy views, or the module's
    own forward when the call is not eligible, `run` says why not (it returns the reason),
    or fastnorm refuses it (its checks raise before anything is written; the module's own
    forward then raises PyTorch's own error, if any)."""
    state = module.__dict__[_STATE]
    reason = _eager_ineligible(args, kwargs)
    if reason is None:
        x = args[0]
        params = state.arrays(kind.params(module), x.dtype)
        if type(params) is str:
            reason = params
        else:
            try:
                y = kind.run(module, x, *params)
            except (ValueError, TypeError) as exc:
                y = f"fastnorm refused: {exc}"
            if type(y) is not str:
                state.fastnorm_calls += 1
                return y
            reason = y
    state.own(reason)
    return type(module).forward(module, *args, **kwargs)


def _param(module: nn.Module, name: str) -> Any:
    """module.<name> (a parameter, buffer or None), without nn.Module.__getattr__'s cost."""
    d = module.__dict__
    for store in ("_parameters", "_buffers"):
        table = d[store]
        if name in table:
            return table[name]
    return getattr(module, name, None)


def _params(module: nn.Module) -> tuple[Any, Any]:
    return (_param(module, "weight"), _param(module, "bias"))


# ---------------------------------------------------------------------------------------
# the kinds of module: eager path (on the NumPy views of the parameters: a tensor, or the
# reason for the module's own forward) and compiled path (a tensor, or None) of each

# BatchNorm1d/2d/3d

_BATCH_NORM_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
_INSTANCE_NORM_NO_BATCH_DIM = {nn.InstanceNorm1d: 2, nn.InstanceNorm2d: 3,
                               nn.InstanceNorm3d: 4}

def _batch_norm_eager(m: nn.Module, x: torch.Tensor, weight: Array | None, bias: Array | None, rm: Array | None, rv: Array | None
                      ) -> torch.Tensor | str:
    if x.dim() not in _BATCH_NORM_DIMS[type(m)]:
        return "input of another number of dims"
    if m.training:
        if m.momentum is None:        # cumulative average: the module's own forward
            return "training with momentum=None"
        if not m.track_running_stats:
            rm = rv = None
        y = _norms.batch_norm(_array(x), rm, rv, weight, bias, True, m.momentum, m.eps)
        if rm is not None:
            _bump_versions((m.running_mean, m.running_var))
        if m.track_running_stats and m.num_batches_tracked is not None:
            m.num_batches_tracked.add_(1)
        return _tensor(y)
    # eval: the running statistics; none (track_running_stats=False): batch statistics
    if rm is not None and not x.is_contiguous():
        # a per-channel affine map on channels_last data: PyTorch's kernel is as fast
        # (measured: benchmarks/torch_models.py --channels-last, ResNet-50)
        return "eval on channels_last input: PyTorch's kernel is as fast"
    return _tensor(_norms.batch_norm(_array(x), rm, rv, weight, bias, False, 0.1, m.eps))


def _batch_norm_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if m.training or x.dim() not in _BATCH_NORM_DIMS[type(m)]:
        return None               # running statistics updates: the module's own forward
    return ops.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, float(m.eps))


def _running_params(m: nn.Module) -> tuple[Any, Any, Any, Any]:
    return (_param(m, "weight"), _param(m, "bias"), _param(m, "running_mean"),
            _param(m, "running_var"))


# InstanceNorm1d/2d/3d (unbatched input: one sample)

def _instance_norm_args(m: nn.Module, x: torch.Tensor) -> tuple[bool, bool] | None:
    """(use_input_stats, unbatched), or None for the module's own forward."""
    no_batch = _INSTANCE_NORM_NO_BATCH_DIM[type(m)]
    if x.dim() not in (no_batch, no_batch + 1) or x.shape[-no_batch] != m.num_features:
        return None
    return m.training or not m.track_running_stats, x.dim() == no_batch


def _instance_norm_eager(m: nn.Module, x: torch.Tensor, weight: Array | None, bias: Array | None, rm: Array | None, rv: Array | None
                         ) -> torch.Tensor | str:
    args = _instance_norm_args(m, x)
    if args is None:
        return "input of another shape"
    use_input_stats, unbatched = args
    xa = _array(x)
    if unbatched:
        xa = xa[None]
    momentum = m.momentum if m.momentum is not None else 0.0      # as torch's forward
    y = _norms.instance_norm(xa, rm, rv, weight, bias, use_input_stats, momentum, m.eps)
    if use_input_stats and rm is not None:
        _bump_versions((m.running_mean, m.running_var))
    return _tensor(y[0] if unbatched else y)


def _instance_norm_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    args = _instance_norm_args(m, x)
    if args is None:
        return None
    use_input_stats, unbatched = args
    if use_input_stats and m.running_mean is not None:
        return None               # updates the running statistics: the module's own forward
    xb = x.unsqueeze(0) if unbatched else x
    rm, rv = (None, None) if use_input_stats else (m.running_mean, m.running_var)
    y = ops.instance_norm(xb, rm, rv, m.weight, m.bias, use_input_stats, float(m.eps))
    return y.squeeze(0) if unbatched else y


# GroupNorm

def _group_norm_eager(m: nn.Module, x: torch.Tensor, weight: Array | None, bias: Array | None) -> torch.Tensor | str:
    if x.dim() < 2:
        return "input of fewer than 2 dims"
    y = _norms.group_norm(_array(x), m.num_groups, weight, bias, m.eps)
    return _tensor(cast(Array, y))           # (y alone without return_stats)


def _group_norm_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if x.dim() < 2 or x.shape[1] % m.num_groups:
        return None
    return ops.group_norm(x, m.num_groups, m.weight, m.bias, float(m.eps))


# LayerNorm over the trailing dims (nn.LayerNorm, timm's LayerNorm, ConvNeXt's LayerNorm in
# the channels_last format)

def _trailing_ok(m: nn.Module, x: torch.Tensor) -> bool:
    shape, k = m.normalized_shape, len(m.normalized_shape)
    return bool(x.dim() >= k and x.shape[x.dim() - k:] == tuple(shape))


def _native_for_trailing(x: torch.Tensor, k: int) -> bool:
    """Whether x's layout is native for a LayerNorm/RMSNorm over its k trailing dims:
    contiguous, or channels_last with C among those dims."""
    if x.is_contiguous():
        return True
    if k < x.dim() - 1:
        return False
    return bool((x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
                or (x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)))


def _trailing(plan: Callable[..., Any], x: torch.Tensor, *args: Any) -> torch.Tensor:
    """plan(x, *args) for a norm over trailing dims. Another layout (a permuted view, as
    ConvNeXt hands its LayerNorm) is first copied by torch into a contiguous tensor, as
    torch's own LayerNorm does (faster than NumPy's transposing copy), and normalized in
    place there: the result has the layout torch's module would return."""
    k = len(args[0]) if isinstance(args[0], tuple) else 1
    if _native_for_trailing(x, k):
        return _tensor(plan(_array(x), *args))
    xc = x.contiguous()
    a = _array(xc)
    plan(a, *args, out=a)
    return xc


def _layer_norm_eager(m: nn.Module, x: torch.Tensor, weight: Array | None, bias: Array | None) -> torch.Tensor | str:
    if not _trailing_ok(m, x):
        return "input of another shape"
    return _trailing(_norms.layer_norm, x, tuple(m.normalized_shape), weight, bias, m.eps)


def _layer_norm_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if not _trailing_ok(m, x):
        return None
    return ops.layer_norm(x, list(m.normalized_shape), m.weight, m.bias, float(m.eps))


# RMSNorm over the trailing dims: nn.RMSNorm (eps=None: finfo(dtype).eps, as fastnorm)

def _rms_norm_eager(m: nn.Module, x: torch.Tensor, weight: Array | None) -> torch.Tensor | str:
    if not _trailing_ok(m, x):
        return "input of another shape"
    return _trailing(_norms.rms_norm, x, tuple(m.normalized_shape), weight, m.eps)


def _rms_norm_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if not _trailing_ok(m, x):
        return None
    return ops.rms_norm(x, list(m.normalized_shape), m.weight,
                        None if m.eps is None else float(m.eps))


# RMSNorm over the last dim (LlamaRMSNorm and its copies: x * rsqrt(mean(x**2) + eps) *
# weight; Gemma's: ... * (1 + weight))

def _last_dim_eps(m: nn.Module) -> float:
    """The eps of an RMSNorm class: `variance_epsilon` (Llama and its copies), `eps`
    (Gemma) or `epsilon`, whichever the instance has."""
    for name in ("variance_epsilon", "eps", "epsilon"):
        eps = getattr(m, name, None)
        if eps is not None:
            return float(eps)
    return float(m.eps)        # AttributeError: the module's own forward


def _last_dim_ok(m: nn.Module, x: torch.Tensor) -> bool:
    return bool(x.dim() >= 1 and m.weight.dim() == 1 and x.shape[-1] == m.weight.shape[0])


def _weight_only(m: nn.Module) -> tuple[Any]:
    return (_param(m, "weight"),)


def _last_dim_rms_eager(m: nn.Module, x: torch.Tensor, weight: Array | None) -> torch.Tensor | str:
    if not _last_dim_ok(m, x):
        return "input of another shape"
    return _trailing(_norms.rms_norm, x, (x.shape[-1],), weight, _last_dim_eps(m))


def _last_dim_rms_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if not _last_dim_ok(m, x):
        return None
    return ops.rms_norm(x, [x.shape[-1]], m.weight, _last_dim_eps(m))


def _gemma_rms_eager(m: nn.Module, x: torch.Tensor, weight: Array | None) -> torch.Tensor | str:
    if not _last_dim_ok(m, x) or weight is None:
        return "input of another shape"
    weight = weight + weight.dtype.type(1)
    return _trailing(_norms.rms_norm, x, (x.shape[-1],), weight, _last_dim_eps(m))


def _gemma_rms_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if not _last_dim_ok(m, x):
        return None
    return ops.rms_norm(x, [x.shape[-1]], m.weight + 1.0, _last_dim_eps(m))


# LayerNorm across C of (N, C, H, W): ConvNeXt's LayerNorm in the channels_first format,
# timm's LayerNorm2d

def _channel_ok(m: nn.Module, x: torch.Tensor) -> bool:
    return bool(x.dim() == 4 and m.weight is not None and x.shape[1] == m.weight.shape[0])


def _channel_layer_norm_eager(m: nn.Module, x: torch.Tensor, weight: Array | None, bias: Array | None) -> torch.Tensor | str:
    # These modules (ConvNeXt's, timm's LayerNorm2d) permute to NHWC, normalize and permute
    # back: their result is channels_last whatever the input. So is this one: channels_last
    # x is native (rows of C), other x is first copied into channels_last by torch.
    # Channels_last memory is rows of C: a LayerNorm over the last dim of its NHWC view (the
    # same kernel as channel_layer_norm there, through the plans' fast path).
    if not _channel_ok(m, x):
        return "input of another shape"
    if x.is_contiguous(memory_format=torch.channels_last):
        rows = _array(x).transpose(0, 2, 3, 1)
        y = _norms.layer_norm(rows, rows.shape[-1], weight, bias, m.eps)
        # (y alone without return_stats)
        return _tensor(cast(Array, y)).permute(0, 3, 1, 2)
    xc = x.contiguous(memory_format=torch.channels_last)
    rows = _array(xc).transpose(0, 2, 3, 1)
    _norms.layer_norm(rows, rows.shape[-1], weight, bias, m.eps, out=rows)
    return xc


def _channel_layer_norm_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if not _channel_ok(m, x):
        return None
    return ops.channel_layer_norm(x.contiguous(memory_format=torch.channels_last), m.weight,
                                  m.bias, float(m.eps))


# ConvNeXt's LayerNorm: the format is an attribute of the instance

def _convnext_eager(m: nn.Module, x: torch.Tensor, weight: Array | None, bias: Array | None) -> torch.Tensor | str:
    if m.data_format == "channels_first":
        return _channel_layer_norm_eager(m, x, weight, bias)
    return _layer_norm_eager(m, x, weight, bias)


def _convnext_compiled(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    if m.data_format == "channels_first":
        return _channel_layer_norm_compiled(m, x)
    return _layer_norm_compiled(m, x)


def _convnext_static(m: nn.Module) -> str | None:
    if getattr(m, "data_format", None) not in ("channels_first", "channels_last"):
        return f"data_format {getattr(m, 'data_format', None)!r} is not one fastnorm knows"
    return None
