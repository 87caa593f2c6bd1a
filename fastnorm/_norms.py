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

import numpy as np

from . import _dispatch, _threads
from . import _layout as L
from . import _validate as V
from ._shapes import ChannelShape, ColumnShape, RowShape
from ._stats import merge_raw, raw_moments


# ---------------------------------------------------------------------------------------
# buffers and parameters

def _buffers(x, out, in_place, native=True):
    return L.Buffers(x, out, in_place, V.compute_dtype(x.dtype), native)


def _apply_channels(buf, shape, mean, var, weight, bias, eps, nt, sets=1):
    """Per-channel apply from statistics (sets * channels,) of any float dtype, in float64."""
    _dispatch.kernels().apply_channels(*buf.flat(), shape,
                                       np.ascontiguousarray(mean, np.float64).reshape(-1),
                                       np.ascontiguousarray(var, np.float64).reshape(-1),
                                       weight, bias, eps, nt, sets)


def _channel_shape(buf, n, channels, inner):
    """The ChannelShape of a per-channel apply: (n, C, inner) in C order; channels-last
    memory is rows of C values."""
    return ChannelShape(n, channels, inner) if buf.perm is None else ChannelShape(
        n * inner, channels, 1)


def _memory_param(param, buf, k):
    """An elementwise parameter over the trailing k dims, in the memory order of buf."""
    if param is None or buf.perm is None:
        return param
    first = len(buf.perm) - k
    return np.ascontiguousarray(param.transpose([p - first for p in buf.perm if p >= first]))


def _column_stats(buf, n, inner, channels, nt):
    """Per-(sample, channel) Raw statistics of a channels-last buffer: columns of C over the
    spatial rows of each sample."""
    return raw_moments(buf.src.reshape(n, inner, channels), (1,), nt)


def _flat(param):
    return param if param is None or param.ndim == 1 else param.reshape(-1)


# The NumPy steps after a kernel has written its output must not raise: under
# np.errstate(all="raise") a FloatingPointError there would come after the write. They run
# with floating-point errors ignored (an eps=0 constant row has rstd inf, as in torch).

def _stats_out(values, shape, dtype):
    with np.errstate(all="ignore"):
        return values.reshape(shape).astype(V.native(dtype))


# ---------------------------------------------------------------------------------------
# row-local normalizations

def _precise(x, *kept):
    """Whether statistics of float32 data are kept in float64 arrays (running statistics):
    then the kernels sum in float64 lanes (float32 lanes, ~1e-8 relative, suffice for a
    float32 output)."""
    return x.dtype != np.float64 and any(k is not None and k.dtype == np.float64 for k in kept)


def _normalize_groups(x, out, in_place, shape, weight, bias, eps, nt, *, rms=False,
                      want_stats=False, precise=False, param_dims=0):
    """Run normalize_groups over a RowShape; returns (y, mean, var), float64 statistics per
    group (None unless want_stats). param_dims: the trailing dims an elementwise weight
    covers (LayerNorm, RMSNorm); when they include C, a channels-last x is native (its rows
    are contiguous there) and the parameters are read in its memory order."""
    empty = shape.runs * shape.run_len == 0        # groups of no values: NaN, as in torch
    mean = np.full(shape.groups, np.nan if empty else 0.0) if want_stats else None
    var = np.full(shape.groups, np.nan if empty else 0.0) if want_stats else None
    buf = _buffers(x, out, in_place, native=param_dims >= x.ndim - 1)
    if x.size:
        _dispatch.kernels().normalize_groups(*buf.flat(), shape,
                                             _flat(_memory_param(weight, buf, param_dims)),
                                             _flat(_memory_param(bias, buf, param_dims)), eps,
                                             rms, mean, var, nt, precise)
    return buf.finish(), mean, var


def _rstd(var, eps):
    with np.errstate(all="ignore"):
        return 1.0 / np.sqrt(var + eps)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, out=None,
               return_stats=False, num_threads=None):
    """LayerNorm over the trailing `normalized_shape` dims, as torch.nn.functional.layer_norm.

    Parameters
    ----------
    x : ndarray
        float16, float32 or float64 data.
    normalized_shape : int or sequence of int
        The trailing dims normalized together (k = its length).
    weight, bias : array_like, optional
        Elementwise affine of shape `normalized_shape`.
    eps : float
        Added to the variance.
    out : ndarray, optional
        Where to write the result (``out=x``: in place).
    return_stats : bool
        Also return the mean and 1/std of each normalized group.
    num_threads : int, optional
        OpenMP threads (default: the OpenMP default at call time).

    Returns
    -------
    y : ndarray
        Same shape and dtype as x; or ``(y, mean, rstd)`` with return_stats=True, the
        statistics shaped ``x.shape[:-k] + (1,)*k``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm as fn
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
    y = _dispatch.kernels().layer_norm_fast(x, normalized_shape, weight, bias, eps, out,
                                            return_stats, num_threads)
    if y is not None:
        return y
    x, shape, rows, row, weight, bias = V.row_affine(x, normalized_shape, weight, bias)
    eps = V.eps(eps)
    return_stats = V.flag(return_stats, "return_stats")
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight, bias=bias)

    k = len(shape)
    y, mean, var = _normalize_groups(x, out, in_place, RowShape.rows(rows, row), weight, bias,
                                     eps, nt, want_stats=return_stats, param_dims=k)
    if not return_stats:
        return y
    stats_shape = x.shape[:-k] + (1,) * k
    return (y, _stats_out(mean, stats_shape, x.dtype),
            _stats_out(_rstd(var, eps), stats_shape, x.dtype))


def rms_norm(x, normalized_shape, weight=None, eps=None, *, out=None, num_threads=None):
    """RMSNorm, as torch.nn.functional.rms_norm: ``x / sqrt(mean(x**2) + eps) * weight``
    over the trailing dims; eps=None means ``np.finfo(x.dtype).eps``.

    Parameters
    ----------
    x : ndarray
        float16, float32 or float64 data.
    normalized_shape : int or sequence of int
        The trailing dims normalized together.
    weight : array_like, optional
        Elementwise scale of shape `normalized_shape`.
    eps : float, optional
        Added to the mean square (default ``np.finfo(x.dtype).eps``).
    out : ndarray, optional
        Where to write the result (``out=x``: in place).
    num_threads : int, optional
        OpenMP threads (default: the OpenMP default at call time).

    Returns
    -------
    y : ndarray
        Same shape and dtype as x.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm as fn
    >>> x = np.array([[3., 4.], [1., -1.]], dtype=np.float32)
    >>> print(fn.rms_norm(x, 2).round(3))
    [[ 0.849  1.131]
     [ 1.    -1.   ]]
    >>> print(fn.rms_norm(x, 2, weight=np.array([1., 2.], np.float32)).round(3))
    [[ 0.849  2.263]
     [ 1.    -2.   ]]
    """
    y = _dispatch.kernels().rms_norm_fast(x, normalized_shape, weight, eps, out, num_threads)
    if y is not None:
        return y
    x, shape, rows, row, weight, _ = V.row_affine(x, normalized_shape, weight, None)
    eps = float(np.finfo(x.dtype).eps) if eps is None else V.eps(eps)
    nt = _threads.resolve(V.num_threads(num_threads))
    out, in_place = V.out(out, x, weight=weight)

    return _normalize_groups(x, out, in_place, RowShape.rows(rows, row), weight, None, eps,
                             nt, rms=True, param_dims=len(shape))[0]


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, out=None,
               return_stats=False, num_threads=None):
    """GroupNorm, as torch.nn.functional.group_norm; per-channel affine.

    Parameters
    ----------
    x : ndarray
        ``(N, C, *spatial)`` float16, float32 or float64 data.
    num_groups : int
        Number of groups; it divides C.
    weight, bias : array_like, optional
        Per-channel affine of shape ``(C,)``.
    eps : float
        Added to the variance.
    out : ndarray, optional
        Where to write the result (``out=x``: in place).
    return_stats : bool
        Also return the mean and 1/std of each (sample, group).
    num_threads : int, optional
        OpenMP threads (default: the OpenMP default at call time).

    Returns
    -------
    y : ndarray
        Same shape and dtype as x; or ``(y, mean, rstd)`` with return_stats=True, the
        statistics shaped ``(N, num_groups)``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm as fn
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

    if L.of(x) == L.CHANNELS_LAST and x.size:
        y, mean, var = _group_norm_channels_last(x, out, in_place, groups, weight, bias, eps,
                                                 nt)
    else:
        shape = RowShape.channel_groups(n, channels, groups, inner)
        y, mean, var = _normalize_groups(x, out, in_place, shape, weight, bias, eps, nt,
                                         want_stats=return_stats)
    if not return_stats:
        return y
    return (y, _stats_out(mean, (n, groups), x.dtype),
            _stats_out(_rstd(var, eps), (n, groups), x.dtype))


def _group_norm_channels_last(x, out, in_place, groups, weight, bias, eps, nt):
    """GroupNorm of channels-last x: column statistics per (sample, channel), merged over the
    C/G adjacent channels of each group (Chan's merge, in order), then a row-vector apply
    with one parameter set per sample. Returns (y, mean, var) per (sample, group)."""
    n, channels, inner = x.shape[0], x.shape[1], x.size // (x.shape[0] * x.shape[1])
    buf = _buffers(x, out, in_place)
    raw = _column_stats(buf, n, inner, channels, nt)
    per_group = channels // groups
    parts = [type(raw)(raw.count, *(a.reshape(n, groups, per_group)[:, :, j]
                                    for a in raw[1:])) for j in range(per_group)]
    group = parts[0]
    for part in parts[1:]:
        group = merge_raw(group, part)
    mean, var = group.mean, group.m2 / group.count
    _apply_channels(buf, ChannelShape(n * inner, channels, 1),
                    np.repeat(mean, per_group, axis=1), np.repeat(var, per_group, axis=1),
                    weight, bias, eps, nt, sets=n)
    return buf.finish(), mean.reshape(-1), var.reshape(-1)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5, *, out=None, num_threads=None):
    """InstanceNorm, as torch.nn.functional.instance_norm.

    With use_input_stats, statistics are per (sample, channel) over the spatial dims, and
    given running stats are updated in place with the batch average of the per-instance
    mean and unbiased variance. Otherwise the running stats normalize.

    Parameters
    ----------
    x : ndarray
        ``(N, C, *spatial)`` float16, float32 or float64 data.
    running_mean, running_var : ndarray, optional
        Per-channel running statistics of shape ``(C,)`` (updated in place with
        use_input_stats=True).
    weight, bias : array_like, optional
        Per-channel affine of shape ``(C,)``.
    use_input_stats : bool
        Normalize with the statistics of each instance (else with the running ones).
    momentum : float
        Weight of the new statistics in the running-statistics update.
    eps : float
        Added to the variance.
    out : ndarray, optional
        Where to write the result (``out=x``: in place).
    num_threads : int, optional
        OpenMP threads (default: the OpenMP default at call time).

    Returns
    -------
    y : ndarray
        Same shape and dtype as x.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm as fn
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
        if running_mean is None:
            raise ValueError("instance_norm with use_input_stats=False needs running_mean "
                             "and running_var")
        buf = _buffers(x, out, in_place)
        if x.size:
            _apply_channels(buf, _channel_shape(buf, n, channels, inner), running_mean,
                            running_var, weight, bias, eps, nt)
        return buf.finish()

    if L.of(x) == L.CHANNELS_LAST and x.size:
        buf = _buffers(x, out, in_place)
        raw = _column_stats(buf, n, inner, channels, nt)
        mean, var = raw.mean, raw.m2 / inner
        _apply_channels(buf, ChannelShape(n * inner, channels, 1), mean, var, weight, bias,
                        eps, nt, sets=n)
        y = buf.finish()
    else:
        shape = RowShape.instances(n, channels, inner)
        y, mean, var = _normalize_groups(x, out, in_place, shape, weight, bias, eps, nt,
                                         want_stats=running_mean is not None,
                                         precise=_precise(x, running_mean, running_var))
    if running_mean is not None and n:
        with np.errstate(all="ignore"):
            unbiased = var.reshape(n, channels) * (inner / (inner - 1))
            batch_mean, batch_var = mean.reshape(n, channels).mean(axis=0), unbiased.mean(0)
        _update_running(running_mean, running_var, batch_mean, batch_var, momentum)
    return y


def _update_running(running_mean, running_var, mean, unbiased_var, momentum):
    """PyTorch's running-statistics update, in place on the caller's arrays (in float64,
    then stored in their dtype; float16 overflow stores inf, as in torch)."""
    with np.errstate(all="ignore"):
        new_mean = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mean
        new_var = (1.0 - momentum) * running_var.astype(np.float64) + momentum * unbiased_var
        running_mean[...] = new_mean
        running_var[...] = new_var


# ---------------------------------------------------------------------------------------
# BatchNorm and channels-first LayerNorm

def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, out=None, num_threads=None):
    """BatchNorm, as torch.nn.functional.batch_norm.

    Training (or no running stats): per-channel statistics over N and the spatial dims, the
    biased variance normalizes, and given running stats are updated in place with the
    unbiased one. Eval: the running stats normalize.

    Parameters
    ----------
    x : ndarray
        ``(N, C, *spatial)`` float16, float32 or float64 data.
    running_mean, running_var : ndarray, optional
        Per-channel running statistics of shape ``(C,)`` (updated in place in training).
    weight, bias : array_like, optional
        Per-channel affine of shape ``(C,)``.
    training : bool
        Normalize with the batch statistics (else with the running ones).
    momentum : float
        Weight of the batch statistics in the running-statistics update.
    eps : float
        Added to the variance.
    out : ndarray, optional
        Where to write the result (``out=x``: in place).
    num_threads : int, optional
        OpenMP threads (default: the OpenMP default at call time).

    Returns
    -------
    y : ndarray
        Same shape and dtype as x.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm as fn
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
    y = _dispatch.kernels().batch_norm_fast(x, running_mean, running_var, weight, bias,
                                            training, momentum, eps, out, num_threads)
    if y is not None:
        return y
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

    buf = _buffers(x, out, in_place)
    if x.size == 0:
        return buf.finish()
    shape = _channel_shape(buf, n, channels, inner)
    if not (training or running_mean is None):
        _apply_channels(buf, shape, running_mean, running_var, weight, bias, eps, nt)
        return buf.finish()
    if shape.inner > 1:     # channel by channel: statistics, then apply from cache
        mean, var = np.empty(channels), np.empty(channels)
        _dispatch.kernels().normalize_channels(*buf.flat(), shape, weight, bias, eps, mean,
                                               var, nt, _precise(x, running_mean, running_var))
    else:       # (N, C) or channels-last: column statistics, then a row-vector apply
        raw = raw_moments(buf.src.reshape(shape.n, channels), (0,), nt)
        mean, var = raw.mean, raw.m2 / count
        _apply_channels(buf, shape, mean, var, weight, bias, eps, nt)
    if training and running_mean is not None:
        with np.errstate(all="ignore"):
            unbiased = var * (count / (count - 1))
        _update_running(running_mean, running_var, mean, unbiased, momentum)
    return buf.finish()


def channel_layer_norm(x, weight=None, bias=None, eps=1e-6, *, out=None, num_threads=None):
    """LayerNorm across the channel dim at every (n, *spatial) position: ConvNeXt's
    channels_first LayerNorm (timm's LayerNorm2d); weight and bias of shape (C,).

    Parameters
    ----------
    x : ndarray
        ``(N, C, *spatial)`` float16, float32 or float64 data.
    weight, bias : array_like, optional
        Per-channel affine of shape ``(C,)``.
    eps : float
        Added to the variance.
    out : ndarray, optional
        Where to write the result (``out=x``: in place).
    num_threads : int, optional
        OpenMP threads (default: the OpenMP default at call time).

    Returns
    -------
    y : ndarray
        Same shape and dtype as x.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm as fn
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
        buf = _buffers(x, out, in_place)
        if x.size:
            _dispatch.kernels().normalize_groups(*buf.flat(), RowShape.rows(n * inner, channels),
                                                 weight, bias, eps, False, None, None, nt)
        return buf.finish()
    buf = _buffers(x, out, in_place)
    if x.size:
        _dispatch.kernels().normalize_columns(*buf.flat(), ColumnShape(n, channels, inner),
                                              weight, bias, eps, None, None, nt)
    return buf.finish()
