"""The steps the normalization plans (fastnorm._norms, fastnorm._dask_blocks) share: the
buffers a kernel reads and writes, the parameter forms the kernels take, the kernel calls
that normalize groups or apply given statistics, and the running-statistics update.

`apply_rows` is the one plan that applies given statistics to LayerNorm/RMSNorm rows (a dask
block whose rows span blocks gets its statistics from the statistics pass): the same apply
kernel as every per-channel apply, no NumPy arithmetic on the data.
"""
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _dispatch, _threads
from . import _layout as L
from . import _validate as V
from ._shapes import ChannelShape, ColumnShape, RowShape


Array = NDArray[Any]
F64 = NDArray[np.float64]


# ---------------------------------------------------------------------------------------
# buffers and parameters

def buffers(x: Array, out: Array | None, in_place: bool, native: bool = True) -> L.Buffers:
    return L.Buffers(x, out, in_place, V.compute_dtype(x.dtype), native)


def apply_channels(buf: L.Buffers, shape: ChannelShape, mean: ArrayLike, var: ArrayLike,
                   weight: Array | None, bias: Array | None, eps: float, nt: int,
                   sets: int = 1) -> None:
    """Per-channel apply from statistics (sets * channels,) of any float dtype, in float64."""
    _dispatch.kernels().apply_channels(*buf.flat(), shape,
                                       np.ascontiguousarray(mean, np.float64).reshape(-1),
                                       np.ascontiguousarray(var, np.float64).reshape(-1),
                                       weight, bias, eps, nt, sets)


def channel_shape(buf: L.Buffers, n: int, channels: int, inner: int) -> ChannelShape:
    """The ChannelShape of a per-channel apply: (n, C, inner) in C order; channels-last
    memory is rows of C values."""
    return ChannelShape(n, channels, inner) if buf.perm is None else ChannelShape(
        n * inner, channels, 1)


def memory_param(param: Array | None, buf: L.Buffers, k: int) -> Array | None:
    """An elementwise parameter over the trailing k dims, in the memory order of buf."""
    if param is None or buf.perm is None:
        return param
    first = len(buf.perm) - k
    return np.ascontiguousarray(param.transpose([p - first for p in buf.perm if p >= first]))


def normalize_column_sets(x: Array, out: Array | None, in_place: bool, n: int, channels: int,
                          per_group: int, weight: Array | None, bias: Array | None,
                          eps: float, nt: int, precise: bool = False
                          ) -> tuple[Array, F64, F64]:
    """InstanceNorm (per_group 1) or GroupNorm (per_group C/G) of a channels-last x: each
    sample's rows of C, normalized over groups of per_group adjacent channels. Returns
    (y, mean, var), float64 statistics per (sample, group)."""
    buf = buffers(x, out, in_place)
    mean, var = column_sets(buf, n, channels, per_group, weight, bias, eps, nt, precise)
    return buf.finish(), mean, var


def column_sets(buf: L.Buffers, n: int, channels: int, per_group: int,
                weight: Array | None, bias: Array | None, eps: float, nt: int,
                precise: bool = False) -> tuple[F64, F64]:
    """normalize_column_sets into buffers already made; returns (mean, var)."""
    inner = buf.src.size // (n * channels)
    mean, var = np.empty(n * (channels // per_group)), np.empty(n * (channels // per_group))
    _dispatch.kernels().normalize_column_sets(*buf.flat(), ColumnShape(n, inner, channels),
                                              per_group, weight, bias, eps, mean, var, nt,
                                              precise)
    return mean, var


def flat(param: Array | None) -> Array | None:
    return param if param is None or param.ndim == 1 else param.reshape(-1)


# The NumPy steps after a kernel has written its output must not raise: under
# np.errstate(all="raise") a FloatingPointError there would come after the write. They run
# with floating-point errors ignored (an eps=0 constant row has rstd inf, as in torch).

def stats_out(values: Array, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    with np.errstate(all="ignore"):
        result: Array = values.reshape(shape).astype(V.native(dtype))
        return result


# ---------------------------------------------------------------------------------------
# statistics and apply in one kernel call

def precise(x: Array, *kept: Array | None) -> bool:
    """Whether statistics of float32 data are kept in float64 arrays (running statistics):
    then the kernels sum in float64 lanes (float32 lanes, ~1e-8 relative, suffice for a
    float32 output)."""
    return bool(x.dtype != np.float64) and any(k is not None and k.dtype == np.float64 for k in kept)


def normalize_groups(x: Array, out: Array | None, in_place: bool, shape: RowShape,
                     weight: Array | None, bias: Array | None, eps: float, nt: int, *,
                     rms: bool = False, want_stats: bool = False, precise: bool = False,
                     param_dims: int = 0) -> tuple[Array, F64 | None, F64 | None]:
    """Run normalize_groups over a RowShape; returns (y, mean, var), float64 statistics per
    group (None unless want_stats). param_dims: the trailing dims an elementwise weight
    covers (LayerNorm, RMSNorm); when they include C, a channels-last x is native (its rows
    are contiguous there) and the parameters are read in its memory order."""
    empty = shape.runs * shape.run_len == 0        # groups of no values: NaN, as in torch
    mean = np.full(shape.groups, np.nan if empty else 0.0) if want_stats else None
    var = np.full(shape.groups, np.nan if empty else 0.0) if want_stats else None
    buf = buffers(x, out, in_place, native=param_dims >= x.ndim - 1)
    if x.size:
        _dispatch.kernels().normalize_groups(*buf.flat(), shape,
                                             flat(memory_param(weight, buf, param_dims)),
                                             flat(memory_param(bias, buf, param_dims)), eps,
                                             rms, mean, var, nt, precise)
    return buf.finish(), mean, var


def rstd(var: F64, eps: float) -> F64:
    with np.errstate(all="ignore"):
        result: F64 = 1.0 / np.sqrt(var + eps)
        return result


def update_running(running_mean: Array, running_var: Array, mean: F64 | float,
                   unbiased_var: F64 | float, momentum: float) -> None:
    """PyTorch's running-statistics update, in place on the caller's arrays (in float64,
    then stored in their dtype; float16 overflow stores inf, as in torch)."""
    with np.errstate(all="ignore"):
        new_mean = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mean
        new_var = (1.0 - momentum) * running_var.astype(np.float64) + momentum * unbiased_var
        running_mean[...] = new_mean
        running_var[...] = new_var


# ---------------------------------------------------------------------------------------
# apply with given statistics

def apply_rows(x: Array, mean: ArrayLike | None, rstd: ArrayLike, weight: Array | None,
               bias: Array | None, k: int, *, out: Array | None = None,
               num_threads: int | None = None) -> Array:
    """LayerNorm's apply with given statistics, ``(x - mean) * rstd * weight + bias`` over
    the trailing k dims of the float array x (RMSNorm: mean None, bias None). mean and rstd
    hold one value per row (any shape of x.shape[:-k]'s size); weight and bias are
    elementwise over the trailing dims, in the kernel dtype (_validate.param).

    Two passes of the apply kernel (apply_channels) over the same buffer: the rows as
    channels of their own statistics, then the affine as one parameter per column of the
    rows (mean 0, variance 1, eps 0: an exact fma(x, w, b)). Returns out, or a new array of
    x's shape and dtype."""
    row = math.prod(x.shape[x.ndim - k:])
    rows = math.prod(x.shape[:x.ndim - k])
    nt = _threads.resolve(V.num_threads(num_threads))
    buf = buffers(x, out, out is not None and out is x, native=False)
    if x.size == 0:
        return buf.finish()
    with np.errstate(all="ignore"):      # rstd inf (eps 0, constant row) gives var 0
        var = 1.0 / np.square(np.asarray(rstd, np.float64).reshape(-1))
    mean = np.zeros(rows) if mean is None else mean
    kernels = _dispatch.kernels()
    kernels.apply_channels(*buf.flat(), ChannelShape(1, rows, row),
                           np.ascontiguousarray(mean, np.float64).reshape(-1), var, None,
                           None, 0.0, nt)
    if weight is not None or bias is not None:
        kernels.apply_channels(buf.dst.reshape(-1), buf.dst.reshape(-1),
                               ChannelShape(rows, row, 1), np.zeros(row), np.ones(row),
                               *(None if p is None else np.ascontiguousarray(p).reshape(-1)
                                 for p in (weight, bias)), 0.0, nt)
    return buf.finish()
