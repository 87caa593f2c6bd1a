"""The normalizations, each a small plan over the statistics and apply engines.

A plan validates its arguments (fastnorm._validate), maps the shape of x onto a kernel
(DESIGN.md section 1) and hands it contiguous buffers:

  layer_norm, rms_norm      groups = rows, per-element affine          normalize_groups
  instance_norm             groups = (n, c), per-channel affine         normalize_groups
  group_norm                groups = (n, g), per-channel affine         normalize_groups
  channel_layer_norm        columns of each sample's (C, H*W) matrix    normalize_columns
  batch_norm (training)     channel by channel, statistics then apply   normalize_channels
                            ((N, C) input: column statistics, then      apply_channels)
  batch_norm (eval), instance_norm on running stats                     apply_channels

Channels-last x (fastnorm/_layout.py) is native too: per-channel statistics become column
statistics over rows of C (moments' column engine) and the per-channel apply a row-vector
apply (apply_channels, one parameter set per sample for InstanceNorm and GroupNorm);
channel_layer_norm becomes a row LayerNorm over C; LayerNorm/RMSNorm over trailing dims
that include C read their elementwise parameters permuted to the memory order.

Calls with plain arguments (C-contiguous ndarrays of one float dtype, in place or
allocating) first try a fast path in the kernels (_kernels/fast.pxi: layer_norm_fast,
rms_norm_fast, batch_norm_fast) that skips the Python-level planning and runs the same
kernel bodies; it decides alone what it takes (each check beside the _validate rule it
mirrors) and returns None for anything else, which the general path below validates.
"""

from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _dispatch, _threads
from . import _layout as L
from . import _plans as P
from . import _validate as V
from ._docs import fill
from ._shapes import ColumnShape, RowShape
from ._raw import F64

Array = NDArray[Any]


# ---------------------------------------------------------------------------------------
# The fast paths alone, with the signatures of their ops: None when the general path must
# run. The public functions try them before looking for torch tensors among the arguments
# (fastnorm._tensors: that scan cost more than a tiny call's kernel once torch is imported);
# a call they take has only ndarrays and plain numbers, so it has no tensor to translate.

def layer_norm_fast(x: object, normalized_shape: object, weight: object = None,
                    bias: object = None, eps: object = 1e-5, *, out: object = None,
                    return_stats: object = False, num_threads: object = None) -> Array | None:
    result: Array | None = _dispatch.kernels().layer_norm_fast(
        x, normalized_shape, weight, bias, eps, out, return_stats, num_threads)
    return result


def rms_norm_fast(x: object, normalized_shape: object, weight: object = None, eps: object = None,
                  *, out: object = None, num_threads: object = None) -> Array | None:
    result: Array | None = _dispatch.kernels().rms_norm_fast(x, normalized_shape, weight, eps,
                                                             out, num_threads)
    return result


def batch_norm_fast(x: object, running_mean: object = None, running_var: object = None,
                    weight: object = None, bias: object = None, training: object = False,
                    momentum: object = 0.1, eps: object = 1e-5, *, out: object = None,
                    num_threads: object = None) -> Array | None:
    result: Array | None = _dispatch.kernels().batch_norm_fast(
        x, running_mean, running_var, weight, bias, training, momentum, eps, out, num_threads)
    return result


@fill
def layer_norm(x: object, normalized_shape: object, weight: object = None, bias: object = None,
               eps: object = 1e-5, *, out: object = None, return_stats: object = False,
               num_threads: object = None) -> Array | tuple[Array, Array, Array]:
    """LayerNorm over the trailing `normalized_shape` dims, as torch.nn.functional.layer_norm.

    {params_rows}
    {normalized_shape}
    weight, bias : array_like, optional
        Elementwise affine of shape `normalized_shape`.
    {eps}
    {out}
    return_stats : bool
        Also return the mean and 1/std of each normalized group.
    {num_threads}

    Returns
    -------
    y : ndarray
        Same shape and dtype as x; or ``(y, mean, rstd)`` with return_stats=True, the
        statistics shaped ``x.shape[:-k] + (1,)*k``.

    {examples}
    >>> x = np.array([[1., 2., 3., 4.], [2., 2., 2., 6.]], dtype=np.float32)
    >>> print(fn.layer_norm(x, 4).round(3))
    [[-1.342 -0.447  0.447  1.342]
     [-0.577 -0.577 -0.577  1.732]]
    >>> y, mean, rstd = fn.layer_norm(x, 4, return_stats=True)
    >>> print(mean.shape, mean.ravel(), rstd.ravel().round(3))
    (2, 1) [2.5 3. ] [0.894 0.577]
    >>> fn.layer_norm(x, 4, out=x) is x
    True
    """
    fast = layer_norm_fast(x, normalized_shape, weight, bias, eps, out=out,
                           return_stats=return_stats, num_threads=num_threads)
    if fast is not None:
        return fast
    x, shape, rows, row, weight, bias = V.row_affine(x, normalized_shape, weight, bias)
    eps = V.eps(eps)
    return_stats = V.flag(return_stats, "return_stats")
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight, bias=bias)

    k = len(shape)
    y, mean, var = P.normalize_groups(x, out, in_place, RowShape.rows(rows, row), weight, bias,
                                     eps, nt, want_stats=return_stats, param_dims=k)
    if not return_stats:
        return y
    assert mean is not None and var is not None          # want_stats
    stats_shape = x.shape[:-k] + (1,) * k
    return (y, P.stats_out(mean, stats_shape, x.dtype),
            P.stats_out(P.rstd(var, eps), stats_shape, x.dtype))


@fill
def rms_norm(x: object, normalized_shape: object, weight: object = None, eps: object = None, *,
             out: object = None, num_threads: object = None) -> Array:
    """RMSNorm, as torch.nn.functional.rms_norm: ``x / sqrt(mean(x**2) + eps) * weight``
    over the trailing dims; eps=None means ``np.finfo(x.dtype).eps``.

    {params_rows}
    {normalized_shape}
    weight : array_like, optional
        Elementwise scale of shape `normalized_shape`.
    eps : float, optional
        Added to the mean square (default ``np.finfo(x.dtype).eps``).
    {out}
    {num_threads}

    {returns_y}

    {examples}
    >>> x = np.array([[3., 4.], [1., -1.]], dtype=np.float32)
    >>> print(fn.rms_norm(x, 2).round(3))
    [[ 0.849  1.131]
     [ 1.    -1.   ]]
    >>> print(fn.rms_norm(x, 2, weight=np.array([1., 2.], np.float32)).round(3))
    [[ 0.849  2.263]
     [ 1.    -2.   ]]
    """
    fast = rms_norm_fast(x, normalized_shape, weight, eps, out=out, num_threads=num_threads)
    if fast is not None:
        return fast
    x, shape, rows, row, weight, _ = V.row_affine(x, normalized_shape, weight, None)
    eps = float(np.finfo(x.dtype).eps) if eps is None else V.eps(eps)
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight)

    return P.normalize_groups(x, out, in_place, RowShape.rows(rows, row), weight, None, eps,
                             nt, rms=True, param_dims=len(shape))[0]


@fill
def group_norm(x: object, num_groups: object, weight: object = None, bias: object = None,
               eps: object = 1e-5, *, out: object = None, return_stats: object = False,
               num_threads: object = None) -> Array | tuple[Array, Array, Array]:
    """GroupNorm, as torch.nn.functional.group_norm; per-channel affine.

    {params_channels}
    num_groups : int
        Number of groups; it divides C.
    {affine_channels}
    {eps}
    {out}
    return_stats : bool
        Also return the mean and 1/std of each (sample, group).
    {num_threads}

    Returns
    -------
    y : ndarray
        Same shape and dtype as x; or ``(y, mean, rstd)`` with return_stats=True, the
        statistics shaped ``(N, num_groups)``.

    {examples}
    >>> x = np.arange(12, dtype=np.float64).reshape(1, 4, 3)
    >>> y, mean, rstd = fn.group_norm(x, 2, return_stats=True)
    >>> print(y.shape, mean, rstd.round(3))
    (1, 4, 3) [[2.5 8.5]] [[0.586 0.586]]
    """
    x = V.array_input(x, min_ndim=2)
    n, channels, inner, weight, bias = V.channel_affine(x, weight, bias)
    groups = V.num_groups(num_groups, channels)
    eps = V.eps(eps)
    return_stats = V.flag(return_stats, "return_stats")
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight, bias=bias)

    mean: F64 | None
    var: F64 | None
    if L.of(x) == L.CHANNELS_LAST and x.size:
        y, mean, var = P.normalize_column_sets(x, out, in_place, n, channels,
                                               channels // groups, weight, bias, eps, nt)
    else:
        shape = RowShape.channel_groups(n, channels, groups, inner)
        y, mean, var = P.normalize_groups(x, out, in_place, shape, weight, bias, eps, nt,
                                         want_stats=return_stats)
    if not return_stats:
        return y
    assert mean is not None and var is not None          # want_stats
    return (y, P.stats_out(mean, (n, groups), x.dtype),
            P.stats_out(P.rstd(var, eps), (n, groups), x.dtype))


@fill
def instance_norm(x: object, running_mean: object = None, running_var: object = None,
                  weight: object = None, bias: object = None, use_input_stats: object = True,
                  momentum: object = 0.1, eps: object = 1e-5, *, out: object = None,
                  num_threads: object = None) -> Array:
    """InstanceNorm, as torch.nn.functional.instance_norm.

    With use_input_stats, statistics are per (sample, channel) over the spatial dims, and
    given running stats are updated in place with the batch average of the per-instance
    mean and unbiased variance. Otherwise the running stats normalize.

    {params_channels}
    running_mean, running_var : ndarray, optional
        Per-channel running statistics of shape ``(C,)`` (updated in place with
        use_input_stats=True).
    {affine_channels}
    use_input_stats : bool
        Normalize with the statistics of each instance (else with the running ones).
    {momentum}
    {apply_tail}
    >>> x = np.array([[[1., 2., 3., 4.], [0., 0., 2., 2.]]], dtype=np.float32)
    >>> print(fn.instance_norm(x).round(3))
    [[[-1.342 -0.447  0.447  1.342]
      [-1.    -1.     1.     1.   ]]]
    """
    x = V.array_input(x, min_ndim=2)
    use_input_stats = V.flag(use_input_stats, "use_input_stats")
    n, channels, inner, weight, bias = V.channel_affine(x, weight, bias)
    running_mean, running_var = V.running_stats(running_mean, running_var, channels,
                                                use_input_stats)
    momentum = V.momentum(momentum)
    eps = V.eps(eps)
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight, bias=bias, running_mean=running_mean,
                           running_var=running_var)
    if use_input_stats and inner < 2 and x.size:
        raise ValueError(f"instance_norm needs more than 1 spatial element per channel with "
                         f"use_input_stats=True, got x of shape {x.shape}")
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm with use_input_stats=False needs running_mean "
                             "and running_var")
        buf = P.buffers(x, out, in_place)
        if x.size:
            P.apply_channels(buf, P.channel_shape(buf, n, channels, inner), running_mean,
                            running_var, weight, bias, eps, nt)
        return buf.finish()

    mean: F64 | None
    var: F64 | None
    if L.of(x) == L.CHANNELS_LAST and x.size:
        y, mean, var = P.normalize_column_sets(x, out, in_place, n, channels, 1, weight, bias,
                                               eps, nt, P.precise(x, running_mean, running_var))
    else:
        shape = RowShape.instances(n, channels, inner)
        y, mean, var = P.normalize_groups(x, out, in_place, shape, weight, bias, eps, nt,
                                         want_stats=running_mean is not None,
                                         precise=P.precise(x, running_mean, running_var))
    if running_mean is not None and running_var is not None and n:
        assert mean is not None and var is not None          # want_stats
        with np.errstate(all="ignore"):
            unbiased = var.reshape(n, channels) * (inner / (inner - 1))
            batch_mean, batch_var = mean.reshape(n, channels).mean(axis=0), unbiased.mean(0)
        P.update_running(running_mean, running_var, batch_mean, batch_var, momentum)
    return y


# ---------------------------------------------------------------------------------------
# BatchNorm and channels-first LayerNorm

@fill
def batch_norm(x: object, running_mean: object = None, running_var: object = None,
               weight: object = None, bias: object = None, training: object = False,
               momentum: object = 0.1, eps: object = 1e-5, *, out: object = None,
               num_threads: object = None) -> Array:
    """BatchNorm, as torch.nn.functional.batch_norm.

    Training (or no running stats): per-channel statistics over N and the spatial dims, the
    biased variance normalizes, and given running stats are updated in place with the
    unbiased one. Eval: the running stats normalize.

    {params_channels}
    running_mean, running_var : ndarray, optional
        Per-channel running statistics of shape ``(C,)`` (updated in place in training).
    {affine_channels}
    training : bool
        Normalize with the batch statistics (else with the running ones).
    {momentum}
    {apply_tail}
    >>> x = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> running_mean, running_var = np.zeros(2, np.float32), np.ones(2, np.float32)
    >>> y = fn.batch_norm(x, running_mean, running_var, training=True)
    >>> print(y[:, 0].round(3))
    [[-1.213 -0.728]
     [ 0.728  1.213]]
    >>> print(running_mean, running_var.round(3))
    [0.25 0.45] [1.467 1.467]
    >>> print(fn.batch_norm(x, running_mean, running_var)[0].round(3))
    [[-0.206  0.619]
     [ 1.28   2.106]]
    """
    fast = batch_norm_fast(x, running_mean, running_var, weight, bias, training, momentum, eps,
                           out=out, num_threads=num_threads)
    if fast is not None:
        return fast
    x = V.array_input(x, min_ndim=2)
    training = V.flag(training, "training")
    n, channels, inner, weight, bias = V.channel_affine(x, weight, bias)
    running_mean, running_var = V.running_stats(running_mean, running_var, channels, training)
    momentum = V.momentum(momentum)
    eps = V.eps(eps)
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight, bias=bias, running_mean=running_mean,
                           running_var=running_var)
    count = n * inner
    if training and count < 2:
        raise ValueError(f"batch_norm in training needs more than 1 value per channel, got "
                         f"x of shape {x.shape}")

    buf = P.buffers(x, out, in_place)
    if x.size == 0:
        return buf.finish()
    shape = P.channel_shape(buf, n, channels, inner)
    if not training and running_mean is not None and running_var is not None:
        P.apply_channels(buf, shape, running_mean, running_var, weight, bias, eps, nt)
        return buf.finish()
    if shape.inner > 1:     # channel by channel: statistics, then apply from cache
        mean, var = np.empty(channels), np.empty(channels)
        _dispatch.kernels().normalize_channels(*buf.flat(), shape, weight, bias, eps, mean,
                                               var, nt, P.precise(x, running_mean, running_var))
    else:       # (N, C) or channels-last: one set of rows of channels (InstanceNorm's plan)
        mean, var = P.column_sets(buf, 1, channels, 1, weight, bias, eps, nt,
                                  P.precise(x, running_mean, running_var))
    if training and running_mean is not None and running_var is not None:
        with np.errstate(all="ignore"):
            unbiased = var * (count / (count - 1))
        P.update_running(running_mean, running_var, mean, unbiased, momentum)
    return buf.finish()


@fill
def channel_layer_norm(x: object, weight: object = None, bias: object = None, eps: object = 1e-6,
                       *, out: object = None, num_threads: object = None) -> Array:
    """LayerNorm across the channel dim at every (n, *spatial) position: ConvNeXt's
    channels_first LayerNorm (timm's LayerNorm2d); weight and bias of shape (C,).

    {params_channels}
    {affine_channels}
    {apply_tail}
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> y = fn.channel_layer_norm(x)
    >>> print(y.shape, y[0, :, 0, 0].round(3))
    (1, 2, 2, 2) [-1.  1.]
    """
    x = V.array_input(x, min_ndim=2)
    n, channels, inner, weight, bias = V.channel_affine(x, weight, bias)
    eps = V.eps(eps)
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight, bias=bias)

    if inner == 1 or L.of(x) == L.CHANNELS_LAST:     # a LayerNorm over rows of C
        buf = P.buffers(x, out, in_place)
        if x.size:
            _dispatch.kernels().normalize_groups(*buf.flat(), RowShape.rows(n * inner, channels),
                                                 weight, bias, eps, False, None, None, nt)
        return buf.finish()
    buf = P.buffers(x, out, in_place)
    if x.size:
        _dispatch.kernels().normalize_columns(*buf.flat(), ColumnShape(n, channels, inner),
                                              weight, bias, eps, None, None, nt)
    return buf.finish()
