"""The functions fastnorm.dask runs on single blocks inside its tasks (NumPy in, NumPy out):
the statistics of a block and their merge (the chunk and combine steps of the statistics
reduction), and the normalization of a block, with given statistics or by the in-memory op
when its groups lie inside it."""
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _norms, _plans, _threads
from ._raw import Raw, merge_raw, raw_moments
from ._stats import _variance

Array = NDArray[Any]

# ---------------------------------------------------------------------------------------
# statistics of blocks

def _keepdims_shape(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(1 if d in axes else s for d, s in enumerate(shape))


def _block_stats(block: Array, axis: tuple[int, ...], keepdims: bool = True,
                 computing_meta: bool = False, *, threads: int | None = 1) -> Raw | Array:
    """chunk of the reduction: the Raw statistics of one block over `axis` (a tuple), the
    arrays shaped like the block with the reduced dims kept at size 1. At graph time dask
    calls it on a zero-size meta array (computing_meta): that never reaches a kernel."""
    if computing_meta:
        return np.empty((0,) * block.ndim, dtype=np.float64)
    kept_shape = _keepdims_shape(block.shape, axis)
    count = math.prod(block.shape[d] for d in axis)
    if block.size == 0:                 # a zero-size block: no values, or no groups
        zeros = np.zeros(kept_shape)
        return Raw(count if zeros.size == 0 else 0, zeros, zeros.copy(), zeros.copy())
    raw = raw_moments(np.asarray(block), axis,
                      _threads.resolve(threads))
    return Raw(raw.count, *(a.reshape(kept_shape) for a in raw[1:]))


def _leaves(parts: Any) -> Iterator[Raw]:
    """The Raw results handed to a combine step: nested lists (one level per reduced
    axis), or a single result."""
    if isinstance(parts, Raw):
        yield parts
    else:
        for part in parts:
            yield from _leaves(part)


def _merge_stats(parts: Any, axis: tuple[int, ...], keepdims: bool = True,
                 computing_meta: bool = False) -> Raw | Array | None:
    """combine and aggregate of the reduction: Chan's merge of the Raw statistics of
    adjacent blocks (merge_raw), in block order."""
    if computing_meta:
        return np.empty((0,) * (parts.ndim if hasattr(parts, "ndim") else len(axis)),
                        dtype=np.float64)
    merged: Raw | None = None
    for raw in _leaves(parts):
        merged = raw if merged is None else merge_raw(merged, raw)
    return merged


def _mean_block(raw: Raw, dtype: DTypeLike) -> Array:
    if raw.count == 0:
        return np.full(raw.shift.shape, np.nan, dtype=dtype)
    mean: Array = raw.mean.astype(dtype)
    return mean


def _var_block(raw: Raw, ddof: float, dtype: DTypeLike) -> Array:
    var: Array = np.asarray(_variance(raw.m2, raw.count, ddof)).astype(dtype)
    return var


# ---------------------------------------------------------------------------------------
# normalizations of blocks

def _flat_stats(mean: Array, var: Array) -> tuple[Array, Array]:
    return (np.ascontiguousarray(mean, np.float64).reshape(-1),
            np.ascontiguousarray(var, np.float64).reshape(-1))


def _block_channels(block: Array, mean: Array, var: Array, weight: Array | None, bias: Array | None, *, eps: float,
                    threads: int | None) -> Array:
    """Per-channel apply with given statistics: BatchNorm's eval path."""
    return _norms.batch_norm(block, mean, var, weight, bias, False, eps=eps,
                             num_threads=threads)


def _block_instances(block: Array, mean: Array, var: Array, weight: Array | None, bias: Array | None, *, eps: float,
                     threads: int | None) -> Array:
    """Apply with statistics per (sample, channel) of the block: the block seen as one
    sample of n*C channels (BatchNorm's eval path, parameters repeated per sample)."""
    n, c = block.shape[:2]
    flat = np.ascontiguousarray(block).reshape(1, n * c, -1)
    mean, var = _flat_stats(mean, var)
    weight = None if weight is None else np.tile(weight, n)
    bias = None if bias is None else np.tile(bias, n)
    return _norms.batch_norm(flat, mean, var, weight, bias, False, eps=eps,
                             num_threads=threads).reshape(block.shape)


def _block_rows(block: Array, mean: Array | None, rstd: Array, weight: Array | None, bias: Array | None, *, k: int,
                threads: int | None) -> Array:
    """LayerNorm/RMSNorm apply with given statistics per row (the trailing k dims; RMSNorm:
    mean None): the shared plan fastnorm._plans.apply_rows."""
    return _plans.apply_rows(np.asarray(block), mean, rstd, weight, bias, k,
                             num_threads=threads)


def _block_positions(block: Array, mean: Array, rstd: Array, weight: Array | None, bias: Array | None, *,
                     threads: int | None) -> Array:
    """channel_layer_norm apply with statistics per (n, *spatial) position: rows of C (the
    channels moved last) through apply_rows, moved back."""
    moved = np.moveaxis(np.asarray(block), 1, -1)               # (n, *spatial, C)
    y = _plans.apply_rows(moved, mean, rstd, weight, bias, 1, num_threads=threads)
    return np.ascontiguousarray(np.moveaxis(y, -1, 1))


def _block_op(block: Array, *params: Array | None, op: Callable[..., Array],
              op_args: Callable[..., tuple[Any, ...]], op_kwargs: dict[str, Any],
              threads: int | None) -> Array:
    """The in-memory op on one block whose groups all lie in it: op(block, *op_args(block,
    *param blocks), **op_kwargs)."""
    return op(block, *op_args(block, *params), **op_kwargs, num_threads=threads)


def _instance_args(block: Array, weight: Array | None, bias: Array | None) -> tuple[Array | None, ...]:
    return (None, None, weight, bias)


class _GroupArgs:
    """The in-memory group_norm arguments of one block: its own number of groups."""

    def __init__(self, per_group: int) -> None:
        self.per_group = per_group

    def __call__(self, block: Array, weight: Array | None, bias: Array | None) -> tuple[Any, ...]:
        return (block.shape[1] // self.per_group, weight, bias)

    def __dask_tokenize__(self) -> tuple[str, int]:
        return ("fastnorm.dask.group_args", self.per_group)


class _RowArgs:
    """The in-memory layer_norm / rms_norm arguments of one block."""

    def __init__(self, k: int, rms: bool = False) -> None:
        self.k, self.rms = k, rms

    def __call__(self, block: Array, weight: Array | None, bias: Array | None = None) -> tuple[Any, ...]:
        shape = block.shape[block.ndim - self.k:]
        return (shape, weight) if self.rms else (shape, weight, bias)

    def __dask_tokenize__(self) -> tuple[str, int, bool]:
        return ("fastnorm.dask.row_args", self.k, self.rms)


def _pass_params(block: Array, weight: Array | None, bias: Array | None) -> tuple[Array | None, Array | None]:
    return (weight, bias)
