"""fastnorm's kernels as torch.library custom ops (torch.ops.fastnorm.*), for torch.compile.

Imported by fastnorm.torch only (it imports torch). The ops are functional: each returns a
new tensor and mutates nothing, because functionalization clones the inputs of in-place
custom ops under torch.compile; the calls that update running statistics stay with
PyTorch's own modules there. A fake implementation gives each result's metadata: the
result is laid out like x when x is contiguous or channels_last (4-D/5-D), and contiguous
otherwise, and the real implementation allocates exactly that and writes into it.

Eager code does not go through these ops: the dispatcher costs several microseconds a call,
so fastnorm.torch calls the plans directly on the tensors' memory.
"""
from collections.abc import Callable
from typing import Any, List, Optional, Tuple

import torch
from numpy.typing import NDArray
from torch import Tensor

from . import _norms, _stats
from . import _validate as V

OPS = torch.ops.fastnorm


def _array(t: Tensor) -> NDArray[Any]:
    a: NDArray[Any] = (t.detach() if t.requires_grad else t).numpy()
    return a


def _opt(t: Optional[Tensor]) -> NDArray[Any] | None:
    return None if t is None else _array(t)


def _result_like(x: Tensor) -> Tensor:
    """An empty result for x: x's layout when it is contiguous or channels_last, contiguous
    otherwise (the fake and the real implementations both allocate with this)."""
    if x.dim() in (4, 5) and not x.is_contiguous():
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        if x.is_contiguous(memory_format=fmt):
            return torch.empty_like(x, memory_format=fmt)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _run(x: Tensor, plan: Callable[..., Any], *args: Any, **kwargs: Any) -> Tensor:
    y = _result_like(x)
    plan(_array(x), *args, out=_array(y), **kwargs)
    return y


@torch.library.custom_op("fastnorm::batch_norm", mutates_args=())
def batch_norm(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor], bias: Optional[Tensor], eps: float) -> Tensor:
    """BatchNorm in eval mode: the running statistics normalize (both None: the batch
    statistics); nothing is updated."""
    return _run(x, _norms.batch_norm, _opt(running_mean), _opt(running_var), _opt(weight),
                _opt(bias), False, 0.1, eps)


@torch.library.custom_op("fastnorm::instance_norm", mutates_args=())
def instance_norm(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                  weight: Optional[Tensor], bias: Optional[Tensor], use_input_stats: bool,
                  eps: float) -> Tensor:
    """InstanceNorm; the running statistics are read when use_input_stats is False and
    never updated (pass None with use_input_stats=True)."""
    if use_input_stats and running_mean is not None:
        raise ValueError("fastnorm::instance_norm does not update running statistics: pass "
                         "running_mean=None, running_var=None with use_input_stats=True")
    return _run(x, _norms.instance_norm, _opt(running_mean), _opt(running_var), _opt(weight),
                _opt(bias), use_input_stats, 0.1, eps)


@torch.library.custom_op("fastnorm::group_norm", mutates_args=())
def group_norm(x: Tensor, num_groups: int, weight: Optional[Tensor], bias: Optional[Tensor],
               eps: float) -> Tensor:
    return _run(x, _norms.group_norm, num_groups, _opt(weight), _opt(bias), eps)


@torch.library.custom_op("fastnorm::layer_norm", mutates_args=())
def layer_norm(x: Tensor, normalized_shape: List[int], weight: Optional[Tensor],
               bias: Optional[Tensor], eps: float) -> Tensor:
    return _run(x, _norms.layer_norm, normalized_shape, _opt(weight), _opt(bias), eps)


@torch.library.custom_op("fastnorm::rms_norm", mutates_args=())
def rms_norm(x: Tensor, normalized_shape: List[int], weight: Optional[Tensor],
             eps: Optional[float]) -> Tensor:
    return _run(x, _norms.rms_norm, normalized_shape, _opt(weight), eps)


@torch.library.custom_op("fastnorm::channel_layer_norm", mutates_args=())
def channel_layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                       eps: float) -> Tensor:
    return _run(x, _norms.channel_layer_norm, _opt(weight), _opt(bias), eps)


@torch.library.custom_op("fastnorm::moments", mutates_args=())
def moments(x: Tensor, axis: Optional[List[int]], ddof: float, keepdims: bool
            ) -> Tuple[Tensor, Tensor]:
    """Mean and variance over axis (None: all), in the dtype of x (a float dtype)."""
    mean, var = _stats.moments(_array(x), None if axis is None else tuple(axis), ddof=ddof,
                               keepdims=keepdims)
    return torch.from_numpy(mean), torch.from_numpy(var)


def _same_as_x(x: Tensor, *args: object) -> Tensor:
    return _result_like(x)


for _op in (batch_norm, instance_norm, group_norm, layer_norm, rms_norm, channel_layer_norm):
    _op.register_fake(_same_as_x)


@moments.register_fake
def _moments_fake(x: Tensor, axis: Optional[List[int]], ddof: float, keepdims: bool
                  ) -> Tuple[Tensor, Tensor]:
    axes = V.axes(None if axis is None else tuple(axis), x.dim())
    shape = [1 if d in axes else s for d, s in enumerate(x.shape)] if keepdims else \
        [s for d, s in enumerate(x.shape) if d not in axes]
    return x.new_empty(shape), x.new_empty(shape)
