# Type hints of fastnorm.dask (PEP 561): dask arrays in, lazy dask arrays out. The runtime
# functions are in dask.py; tests/test_typing.py runs stubtest against them.
from collections.abc import Mapping
from typing import SupportsIndex

import dask.array as da
from numpy.typing import DTypeLike

from . import Moments, _Axis, _NormalizedShape, _Param

__all__ = ["moments", "accumulate", "batch_norm", "instance_norm", "group_norm",
           "layer_norm", "rms_norm", "channel_layer_norm"]

TASK_THREADS_KEY: str

# split_every of a dask reduction: an int >= 2 or {axis: int >= 2}
_SplitEvery = int | Mapping[int, int] | None

def moments(x: da.Array, axis: _Axis | None = None, *, ddof: float = 0,
            keepdims: bool = False, dtype: DTypeLike | None = None,
            split_every: _SplitEvery = None) -> tuple[da.Array, da.Array]: ...
def accumulate(x: da.Array, axis: _Axis | None = None, *,
               split_every: _SplitEvery = None) -> Moments: ...

def batch_norm(x: da.Array, running_mean: _Param = None, running_var: _Param = None,
               weight: _Param = None, bias: _Param = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> da.Array: ...
def instance_norm(x: da.Array, running_mean: _Param = None, running_var: _Param = None,
                  weight: _Param = None, bias: _Param = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> da.Array: ...
def group_norm(x: da.Array, num_groups: SupportsIndex, weight: _Param = None, bias: _Param = None,
               eps: float = 1e-5) -> da.Array: ...
def layer_norm(x: da.Array, normalized_shape: _NormalizedShape, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5) -> da.Array: ...
def rms_norm(x: da.Array, normalized_shape: _NormalizedShape, weight: _Param = None,
             eps: float | None = None) -> da.Array: ...
def channel_layer_norm(x: da.Array, weight: _Param = None, bias: _Param = None,
                       eps: float = 1e-6) -> da.Array: ...
