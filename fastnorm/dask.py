"""fastnorm on dask arrays: one-pass statistics and normalizations beyond one machine.

    import fastnorm.dask as fnd
    mean, var = fnd.moments(x, axis=(0, 2, 3))      # lazy, one pass over the data
    acc = fnd.accumulate(x, axis=(0, 2, 3))         # computes: a fastnorm.Moments
    y = fnd.batch_norm(x, running_mean, running_var, training=True)

Statistics are one `da.reduction`: each block's float64 (count, mean, M2) comes from
fastnorm's statistics engine (`raw_moments`, the mean as shift + dev), and dask's tree
reduction merges them with Chan's formula (`merge_raw`, the merge `Moments` uses), so float32
data with a large mean keeps its digits and mean and var come from the same single pass.

The normalizations follow one rule: where every group (a LayerNorm row, an InstanceNorm
(n, c), a GroupNorm (n, g)) lies inside one block, each block is normalized on its own by the
in-memory op (`map_blocks`-style, no statistics pass); otherwise the small statistics are
computed first (one pass, the result of a few floats per group) and the apply runs block by
block with them. BatchNorm in training always computes its statistics first and updates the
running statistics in place at that moment. No step gathers the array in one process.

Kernels inside tasks run with one thread (DESIGN.md section 12: dask already runs one task
per core, distributed's workers set OMP_NUM_THREADS=1); the dask config key
``fastnorm.task-threads`` changes that, read when the graph is built.

This module is an adapter: it validates (fastnorm._validate), translates dask arrays into
blocks and calls fastnorm's plans; it holds no kernels. The functions run on each block
inside the tasks are in fastnorm._dask_blocks.
"""
import math

import numpy as np

try:
    import dask.array as da
except ImportError as exc:          # dask is optional: say what to install
    raise ImportError("fastnorm.dask needs dask: pip install 'dask[array]' (or "
                      "pip install 'fastnorm-kernels[dask]')") from exc

from . import _norms, _plans
from . import _validate as V
from ._dask_blocks import (_GroupArgs, _RowArgs, _block_channels, _block_instances, _block_op,
                           _block_positions, _block_rows, _instance_args, _mean_block,
                           _pass_params, _var_block)
from ._dask_graph import (TASK_THREADS_KEY, _blockwise, _check_reduced,  # noqa: F401
                          _chunked, _computed_raw, _norm_input, _spans_blocks, _stats_graph,
                          _task_threads)
from ._docs import fill
from ._raw import Raw, merge_raw
from ._stats import Moments

__all__ = ["moments", "accumulate", "batch_norm", "instance_norm", "group_norm",
           "layer_norm", "rms_norm", "channel_layer_norm"]


def _stats_input(x):
    """x for the statistics: a dask array of floats or integers."""
    return V.dask_array(x, da.Array, integers=True)


@fill
def moments(x, axis=None, *, ddof=0, keepdims=False, dtype=None, split_every=None):
    """Lazy mean and variance of the dask array x over `axis`, like fastnorm.moments.

    One pass over the data: float64 (count, mean, M2) of each block from fastnorm's
    statistics engine, merged with Chan's formula in dask's tree reduction (`split_every`
    as in dask's reductions). Returns two dask arrays in `dtype` (default: the dtype of x,
    float64 for integer x); compute them together (dask.compute(mean, var)) to read the
    data once.

    {dask_params_numbers}
    axis, ddof, keepdims, dtype
        As in fastnorm.moments.
    {split_every}

    Returns
    -------
    mean, var : dask.array.Array
        Lazy; shaped like the kept dims.

    {dask_examples}
    >>> mean, var = fnd.moments(x, axis=(0, 2))
    >>> print(*dask.compute(mean, var))
    [ 9.5 11.5 13.5] [45.25 45.25 45.25]
    """
    x = _stats_input(x)
    axes = V.axes(axis, x.ndim)
    ddof = V.ddof(ddof)
    keepdims = V.flag(keepdims, "keepdims")
    out_dtype = V.result_dtype(dtype, x.dtype if V.is_float(x.dtype) else np.float64)
    split_every = V.split_every(split_every)
    _check_reduced(x, axes)
    stats = _stats_graph(x, axes, split_every)
    meta = np.empty((0,) * x.ndim, dtype=out_dtype)
    mean = stats.map_blocks(_mean_block, out_dtype, dtype=out_dtype, meta=meta,
                            token="fastnorm-mean")
    var = stats.map_blocks(_var_block, ddof, out_dtype, dtype=out_dtype, meta=meta,
                           token="fastnorm-var")
    if not keepdims:
        mean, var = mean.squeeze(axis=axes), var.squeeze(axis=axes)
    return mean, var


@fill
def accumulate(x, axis=None, *, split_every=None):
    """The statistics of the whole dask array x over `axis`, computed now: a
    fastnorm.Moments, mergeable with others (other arrays, later batches, other
    processes) as if it had seen every value of x.

    {dask_params_numbers}
    axis : None, int or tuple of int
        The dims reduced (None: all).
    {split_every}

    Returns
    -------
    fastnorm.Moments

    {dask_examples}
    >>> acc = fnd.accumulate(x, axis=(0, 2))
    >>> print(acc.count, acc.mean)
    8 [ 9.5 11.5 13.5]
    """
    x = _stats_input(x)
    axes = V.axes(axis, x.ndim)
    split_every = V.split_every(split_every)
    _check_reduced(x, axes)
    raw = _computed_raw(x, axes, split_every)
    return Moments._from_raw(raw, axis, x.ndim)


# ---------------------------------------------------------------------------------------
# normalizations

def _param(value, name, shape, x):
    return V.param(value, name, shape, V.compute_dtype(x.dtype))


def _running_norm_args(x, running_mean, running_var, weight, bias, batch_stats, momentum,
                       eps):
    """The checked (running_mean, running_var, weight, bias, momentum, eps) of batch_norm and
    instance_norm (channels on dim 1); batch_stats: the call normalizes with statistics of
    the batch (training / use_input_stats)."""
    channels = x.shape[1]
    weight = _param(weight, "weight", (channels,), x)
    bias = _param(bias, "bias", (channels,), x)
    running_mean, running_var = V.running_stats(running_mean, running_var, channels,
                                                batch_stats)
    return running_mean, running_var, weight, bias, V.momentum(momentum), V.eps(eps)


@fill
def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5):
    """fastnorm.batch_norm of a dask array (N, C, *spatial); returns a lazy dask array.

    Training (or no running statistics): the per-channel statistics over N and the spatial
    dims are computed now (one pass), the given running statistics (NumPy arrays) are
    updated in place now, and the returned array normalizes each block with them. Eval: the
    running statistics normalize each block.

    {dask_params_channels}
    running_mean, running_var, weight, bias, training, momentum, eps
        As in fastnorm.batch_norm (running statistics: NumPy arrays).

    {dask_tail}
    >>> running_mean, running_var = np.zeros(3), np.ones(3)
    >>> y = fnd.batch_norm(x, running_mean, running_var, training=True)
    >>> print(running_mean)
    [0.95 1.15 1.35]
    >>> print(y.compute()[:, 0, 0].round(3))
    [-1.412 -0.52   0.372  1.264]
    """
    x = _norm_input(x, 2)
    training = V.flag(training, "training")
    channels = x.shape[1]
    running_mean, running_var, weight, bias, momentum, eps = _running_norm_args(
        x, running_mean, running_var, weight, bias, training, momentum, eps)
    count = x.size // channels if channels else 0
    if training and count < 2:
        raise ValueError(f"batch_norm in training needs more than 1 value per channel, got "
                         f"x of shape {x.shape}")
    threads = _task_threads()
    if x.size == 0:
        return x.map_blocks(np.copy, dtype=x.dtype)
    if training or running_mean is None:
        axes = (0,) + tuple(range(2, x.ndim))
        raw = _computed_raw(x, axes)
        mean, var = raw.mean, raw.m2 / count
        if training and running_mean is not None:
            with np.errstate(all="ignore"):
                unbiased = var * (count / (count - 1))
            _plans.update_running(running_mean, running_var, mean, unbiased, momentum)
    else:
        mean, var = running_mean, running_var
    mean, var = (np.asarray(a, dtype=np.float64) for a in (mean, var))
    return _blockwise(_block_channels, x, *(_chunked(p, x.chunks, (1,))
                                            for p in (mean, var, weight, bias)),
                      eps=eps, threads=threads)


@fill
def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """fastnorm.instance_norm of a dask array (N, C, *spatial); returns a lazy dask array.

    Statistics per (sample, channel) over the spatial dims: within each block when the
    spatial dims are not chunked, otherwise computed first. Given running statistics are
    updated in place now (statistics pass first) with the batch average of the
    per-instance mean and unbiased variance. use_input_stats=False: the running statistics
    normalize each block.

    {dask_params_channels}
    running_mean, running_var, weight, bias, use_input_stats, momentum, eps
        As in fastnorm.instance_norm (running statistics: NumPy arrays).

    {dask_tail}
    >>> print(fnd.instance_norm(x).compute()[0, 0].round(3))
    [-1.  1.]
    """
    x = _norm_input(x, 2)
    use_input_stats = V.flag(use_input_stats, "use_input_stats")
    n, channels = x.shape[:2]
    inner = math.prod(x.shape[2:])
    running_mean, running_var, weight, bias, momentum, eps = _running_norm_args(
        x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    if use_input_stats and inner < 2 and x.size:
        raise ValueError(f"instance_norm needs more than 1 spatial element per channel with "
                         f"use_input_stats=True, got x of shape {x.shape}")
    if not use_input_stats and running_mean is None:
        raise ValueError("instance_norm with use_input_stats=False needs running_mean "
                         "and running_var")
    threads = _task_threads()
    params = [_chunked(p, x.chunks, (1,)) for p in (weight, bias)]
    if x.size == 0:
        return x.map_blocks(np.copy, dtype=x.dtype)
    if not use_input_stats:
        stats = [_chunked(np.asarray(p, np.float64), x.chunks, (1,))
                 for p in (running_mean, running_var)]
        return _blockwise(_block_channels, x, *stats, *params, eps=eps, threads=threads)
    spatial = tuple(range(2, x.ndim))
    if running_mean is None and not _spans_blocks(x, spatial):
        return _blockwise(_block_op, x, *params, op=_norms.instance_norm,
                          op_args=_instance_args, op_kwargs={"eps": eps}, threads=threads)
    raw = _computed_raw(x, spatial)
    mean, var = raw.mean, raw.m2 / inner
    if running_mean is not None and n:
        with np.errstate(all="ignore"):
            unbiased = var * (inner / (inner - 1))
        _plans.update_running(running_mean, running_var, mean.mean(axis=0),
                               unbiased.mean(axis=0), momentum)
    stats = [_chunked(s, x.chunks, (0, 1)) for s in (mean, var)]
    return _blockwise(_block_instances, x, *stats, *params, eps=eps, threads=threads)


@fill
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """fastnorm.group_norm of a dask array (N, C, *spatial); returns a lazy dask array.

    Statistics per (sample, group): within each block when the channel chunks hold whole
    groups and the spatial dims are not chunked, otherwise computed first (per (sample,
    channel), merged over the channels of each group).

    {dask_params_channels}
    num_groups, weight, bias, eps
        As in fastnorm.group_norm.

    {dask_tail}
    >>> print(fnd.group_norm(x, 3).compute()[0, 1].round(3))
    [-1.  1.]
    """
    x = _norm_input(x, 2)
    n, channels = x.shape[:2]
    weight = _param(weight, "weight", (channels,), x)
    bias = _param(bias, "bias", (channels,), x)
    groups = V.num_groups(num_groups, channels)
    eps = V.eps(eps)
    threads = _task_threads()
    params = [_chunked(p, x.chunks, (1,)) for p in (weight, bias)]
    if x.size == 0:
        return x.map_blocks(np.copy, dtype=x.dtype)
    per_group = channels // groups
    spatial = tuple(range(2, x.ndim))
    whole_groups = all(c % per_group == 0 for c in x.chunks[1])
    if whole_groups and not _spans_blocks(x, spatial):
        return _blockwise(_block_op, x, *params, op=_norms.group_norm,
                          op_args=_GroupArgs(per_group), op_kwargs={"eps": eps}, threads=threads)
    raw = _computed_raw(x, spatial)                     # per (sample, channel)
    parts = [Raw(raw.count, *(a.reshape(n, groups, per_group)[:, :, j] for a in raw[1:]))
             for j in range(per_group)]
    group = parts[0]
    for part in parts[1:]:
        group = merge_raw(group, part)
    mean = np.repeat(group.mean, per_group, axis=1)
    var = np.repeat(group.m2 / group.count, per_group, axis=1)
    stats = [_chunked(s, x.chunks, (0, 1)) for s in (mean, var)]
    return _blockwise(_block_instances, x, *stats, *params, eps=eps, threads=threads)


def _row_norm(x, normalized_shape, weight, bias, eps, rms):
    x = _norm_input(x, 1)
    shape = V.normalized_shape(normalized_shape, x.shape)
    k = len(shape)
    weight = _param(weight, "weight", shape, x)
    bias = _param(bias, "bias", shape, x) if not rms else None
    eps = (float(np.finfo(V.compute_dtype(x.dtype)).eps) if eps is None else V.eps(eps))
    threads = _task_threads()
    trailing = tuple(range(x.ndim - k, x.ndim))
    params = [_chunked(p, x.chunks, trailing) for p in (weight, bias)]
    if x.size == 0:
        return x.map_blocks(np.copy, dtype=x.dtype)
    if not _spans_blocks(x, trailing):
        if rms:
            return _blockwise(_block_op, x, params[0], op=_norms.rms_norm,
                              op_args=_RowArgs(k, rms=True), op_kwargs={"eps": eps},
                              threads=threads)
        return _blockwise(_block_op, x, *params, op=_norms.layer_norm,
                          op_args=_RowArgs(k), op_kwargs={"eps": eps}, threads=threads)
    raw = _computed_raw(x, trailing)
    var = raw.m2 / raw.count
    if rms:     # x / sqrt(mean(x**2) + eps): mean 0 and "variance" mean(x**2)
        mean, var = None, var + raw.mean * raw.mean
    else:
        mean = raw.mean
    leading = tuple(range(x.ndim - k))
    stats = [_chunked(None if s is None else np.asarray(s), x.chunks, leading)
             for s in (mean, _plans.rstd(var, eps))]
    return _blockwise(_block_rows, x, *stats, *params, k=k, threads=threads)


@fill
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """fastnorm.layer_norm of a dask array over its trailing `normalized_shape` dims;
    returns a lazy dask array. Each block is normalized on its own when the trailing dims
    are not chunked; otherwise the row statistics are computed first.

    {dask_params_rows}
    normalized_shape, weight, bias, eps
        As in fastnorm.layer_norm.

    {dask_tail}
    >>> print(fnd.layer_norm(x, 2).compute()[0, 2].round(3))
    [-1.  1.]
    """
    return _row_norm(x, normalized_shape, weight, bias, eps, rms=False)


@fill
def rms_norm(x, normalized_shape, weight=None, eps=None):
    """fastnorm.rms_norm of a dask array over its trailing `normalized_shape` dims
    (eps=None: finfo(dtype).eps); returns a lazy dask array. Blockwise when the trailing
    dims are not chunked; otherwise mean(x**2) of each row is computed first.

    {dask_params_rows}
    normalized_shape, weight, eps
        As in fastnorm.rms_norm.

    {dask_tail}
    >>> print(fnd.rms_norm(x, 2).compute()[0, 1].round(3))
    [0.784 1.177]
    """
    return _row_norm(x, normalized_shape, weight, None, eps, rms=True)


@fill
def channel_layer_norm(x, weight=None, bias=None, eps=1e-6):
    """fastnorm.channel_layer_norm of a dask array (N, C, *spatial); returns a lazy dask
    array. Blockwise when C is not chunked; otherwise the statistics of every (n, *spatial)
    position are computed first.

    {dask_params_channels}
    weight, bias, eps
        As in fastnorm.channel_layer_norm.

    {dask_tail}
    >>> print(fnd.channel_layer_norm(x).compute()[0, :, 0].round(3))
    [-1.225  0.     1.225]
    """
    x = _norm_input(x, 2)
    channels = x.shape[1]
    weight = _param(weight, "weight", (channels,), x)
    bias = _param(bias, "bias", (channels,), x)
    eps = V.eps(eps)
    threads = _task_threads()
    params = [_chunked(p, x.chunks, (1,)) for p in (weight, bias)]
    if x.size == 0:
        return x.map_blocks(np.copy, dtype=x.dtype)
    if not _spans_blocks(x, (1,)):
        return _blockwise(_block_op, x, *params, op=_norms.channel_layer_norm,
                          op_args=_pass_params, op_kwargs={"eps": eps}, threads=threads)
    raw = _computed_raw(x, (1,))                       # per (n, *spatial)
    rstd = _plans.rstd(raw.m2 / raw.count, eps)
    positions = (0,) + tuple(range(2, x.ndim))
    stats = [_chunked(s, x.chunks, positions) for s in (raw.mean, rstd)]
    return _blockwise(_block_positions, x, *stats, *params, threads=threads)
