"""The dask graphs of fastnorm.dask: the statistics reduction (one `da.reduction` whose blocks
are Raw statistics, fastnorm._dask_blocks' chunk and combine steps) and its computed result,
and the blockwise apply of the normalizations (small NumPy parameters chunked like x).
Imported by fastnorm.dask only, after it has checked that dask is installed."""
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import dask.base
import dask.config
import numpy as np
from numpy.typing import NDArray

from . import _validate as V
from ._dask_blocks import _block_stats, _merge_stats
from ._raw import Raw

Param = tuple[Any, tuple[int, ...] | None]     # (dask array or None, blockwise index)

TASK_THREADS_KEY = "fastnorm.task-threads"


def _task_threads() -> int | None:
    """Threads of each kernel call inside a task (dask config, default 1)."""
    return V.num_threads(dask.config.get(TASK_THREADS_KEY, 1))


# ---------------------------------------------------------------------------------------
# the statistics reduction

def _stats_graph(x: da.Array, axes: tuple[int, ...], split_every: object) -> da.Array:
    """A dask array of x's shape with the reduced dims at size 1 whose blocks are Raw
    statistics (not arrays: only the functions here and in _dask_blocks read them)."""
    chunk = functools.partial(_block_stats, threads=_task_threads())
    graph: da.Array = da.reduction(x, chunk, _merge_stats, combine=_merge_stats, axis=axes,
                                   keepdims=True, dtype=np.float64, split_every=split_every,
                                   concatenate=False, name="fastnorm-moments",
                                   meta=np.empty((0,) * x.ndim, dtype=np.float64))
    return graph


def _check_reduced(x: da.Array, axes: tuple[int, ...]) -> None:
    """The kept dims must have known chunk sizes (the reduced ones may be unknown: their
    counts are found when the blocks are read)."""
    for d, chunks in enumerate(x.chunks):
        if d not in axes and any(math.isnan(c) for c in chunks):
            raise ValueError(f"x has unknown chunk sizes along axis {d}, which is not "
                             f"reduced; call x.compute_chunk_sizes() first")


def _concatenate_raws(raws: NDArray[np.object_], kept_shape: tuple[int, ...]) -> Raw:
    """One Raw from the Raw blocks of a reduction (an object array of numblocks, reduced
    dims at size 1), joined along the kept dims and shaped `kept_shape`."""
    first = raws.flat[0]
    arrays = []
    for field in ("shift", "dev", "m2"):
        parts = np.empty(raws.shape, dtype=object)
        for index, raw in np.ndenumerate(raws):
            parts[index] = getattr(raw, field)
        joined = np.block(parts.tolist()) if parts.ndim else parts[()]
        arrays.append(np.ascontiguousarray(joined, dtype=np.float64).reshape(kept_shape))
    return Raw(first.count, *arrays)


def _computed_raw(x: da.Array, axes: tuple[int, ...], split_every: object = None) -> Raw:
    """The Raw statistics of x over `axes`, computed (NumPy arrays of the kept dims)."""
    stats = _stats_graph(x, axes, split_every)
    blocks = stats.to_delayed()
    raws = np.empty(blocks.shape, dtype=object)
    computed = dask.base.compute(*blocks.ravel().tolist())
    for index, raw in zip(np.ndindex(blocks.shape), computed):
        raws[index] = raw
    kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
    return _concatenate_raws(raws, kept_shape)


# ---------------------------------------------------------------------------------------
# normalizations: validation

def _norm_input(x: object, min_ndim: int) -> da.Array:
    arr: da.Array = V.dask_array(x, da.Array, integers=False, min_ndim=min_ndim)
    for d, chunks in enumerate(arr.chunks):
        if any(math.isnan(c) for c in chunks):
            raise ValueError(f"x has unknown chunk sizes along axis {d}; call "
                             f"x.compute_chunk_sizes() first")
    return arr


def _chunked(param: NDArray[Any] | None, chunks: Sequence[tuple[int, ...]],
             axes: tuple[int, ...]) -> Param:
    """A small NumPy parameter (weight, bias, statistics) as a dask array chunked like
    x along `axes`, with its blockwise index; (None, None) for None."""
    if param is None:
        return None, None
    return da.from_array(param, chunks=tuple(chunks[d] for d in axes)), tuple(axes)


def _blockwise(func: Callable[..., Any], x: da.Array, *params: Param,
               **kwargs: Any) -> da.Array:
    """y = func(block, *param blocks, **kwargs) for every block of x: params are
    (dask array or None, index) pairs aligned with x's dims."""
    index = tuple(range(x.ndim))
    args: list[Any] = [x, index]
    for arr, ind in params:
        args += [arr, ind]
    y: da.Array = da.blockwise(func, index, *args, dtype=x.dtype,
                               meta=np.empty((0,) * x.ndim, dtype=x.dtype), **kwargs)
    return y


def _spans_blocks(x: da.Array, axes: tuple[int, ...]) -> bool:
    """Whether a group reduced over `axes` spans more than one block."""
    return any(x.numblocks[d] > 1 for d in axes)
