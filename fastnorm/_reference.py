"""float64 NumPy reference formulas of fastnorm's operations, with PyTorch semantics.

The one copy used by the test suite, the self-check of `python -m fastnorm`, the smoke script
and the benchmark's correctness check. Written from the definitions (DESIGN.md section 5),
in plain float64 NumPy with no fastnorm code, so that they are an independent oracle.
"""
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]
Axis = int | Sequence[int] | None

# long double wider than float64 (x87 extended, 64-bit mantissa) on most x86-64 builds
LD_EXTENDED = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def ref_moments(x: ArrayLike, axis: Axis = None, ddof: float = 0) -> tuple[Any, Any]:
    """(mean, var) in float64 over `axis`, as np.mean / np.var."""
    a = np.asarray(x, dtype=np.float64)
    ax = None if axis is None else (axis if isinstance(axis, int) else tuple(axis))
    return a.mean(axis=ax), a.var(axis=ax, ddof=ddof)


def _reduced_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    items = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) % ndim for a in items))


def _fsum_var(row: F64, ddof: float) -> float:
    n = row.size
    m = math.fsum(row) / n
    d = row - m
    s1, s2 = math.fsum(d), math.fsum(d * d)
    return (s2 - s1 * s1 / n) / (n - ddof)


def ref_var_exact(x: ArrayLike, axis: Axis = None, ddof: float = 0) -> NDArray[np.longdouble]:
    """The variance of x's very values over `axis` (np.longdouble, shaped like the kept
    dims), far more exact than any float64 method: two-pass in long double with the mean
    refined once, or with exactly rounded sums (math.fsum) where long double is no wider
    than float64. The oracle of the accuracy tests and scripts/stats_accuracy.py."""
    xa = np.asarray(x)
    axes = _reduced_axes(axis, xa.ndim)
    kept = tuple(s for d, s in enumerate(xa.shape) if d not in axes)
    n = math.prod(xa.shape[d] for d in axes)
    g = np.moveaxis(xa, axes, tuple(range(xa.ndim - len(axes), xa.ndim))).reshape(-1, n)
    if LD_EXTENDED:
        xl = g.astype(np.longdouble)
        m = xl.mean(axis=1, keepdims=True)
        m = m + (xl - m).mean(axis=1, keepdims=True)
        d = xl - m
        v = (d * d).sum(axis=1) / (n - ddof)
    else:
        v = np.array([_fsum_var(row, ddof) for row in g.astype(np.float64)])
    result: NDArray[np.longdouble] = v.astype(np.longdouble).reshape(kept)
    return result


def _chan_shape(x: F64) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _f64(a: ArrayLike) -> F64:
    return np.asarray(a, dtype=np.float64)


def _f64_opt(a: ArrayLike | None) -> F64 | None:
    return None if a is None else _f64(a)


def _affine(y: F64, weight: ArrayLike | None, bias: ArrayLike | None, shape: tuple[int, ...]) -> F64:
    if weight is not None:
        y = y * _f64(weight).reshape(shape)
    if bias is not None:
        y = y + _f64(bias).reshape(shape)
    return y


def ref_batch_norm(x: ArrayLike, running_mean: ArrayLike | None = None, running_var: ArrayLike | None = None,
                   weight: ArrayLike | None = None, bias: ArrayLike | None = None, training: bool = False,
                   momentum: float = 0.1, eps: float = 1e-5
                   ) -> tuple[F64, F64 | None, F64 | None]:
    """Returns (y, new_running_mean, new_running_var) in float64."""
    x = _f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    rm, rv = _f64_opt(running_mean), _f64_opt(running_var)
    if training or rm is None or rv is None:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        n = x.size // x.shape[1]
        if training and rm is not None:
            rm = (1 - momentum) * rm + momentum * mean
        if training and rv is not None:
            rv = (1 - momentum) * rv + momentum * var * n / (n - 1)
    else:
        mean, var = rm, rv
    shape = _chan_shape(x)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return _affine(y, weight, bias, shape), rm, rv


def ref_instance_norm(x: ArrayLike, running_mean: ArrayLike | None = None, running_var: ArrayLike | None = None,
                      weight: ArrayLike | None = None, bias: ArrayLike | None = None, use_input_stats: bool = True,
                      momentum: float = 0.1, eps: float = 1e-5
                      ) -> tuple[F64, F64 | None, F64 | None]:
    """Returns (y, new_running_mean, new_running_var) in float64."""
    x = _f64(x)
    axes = tuple(range(2, x.ndim))
    rm, rv = _f64_opt(running_mean), _f64_opt(running_var)
    shape = _chan_shape(x)
    if use_input_stats or rm is None or rv is None:
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        m = x[0, 0].size
        if rm is not None:
            rm = (1 - momentum) * rm + momentum * mean.reshape(x.shape[:2]).mean(axis=0)
        if rv is not None:
            unb = var.reshape(x.shape[:2]) * m / (m - 1)
            rv = (1 - momentum) * rv + momentum * unb.mean(axis=0)
    else:
        mean, var = rm.reshape(shape), rv.reshape(shape)
    y = (x - mean) / np.sqrt(var + eps)
    return _affine(y, weight, bias, shape), rm, rv


def ref_group_norm(x: ArrayLike, num_groups: int, weight: ArrayLike | None = None, bias: ArrayLike | None = None,
                   eps: float = 1e-5) -> tuple[F64, F64, F64]:
    """Returns (y, mean (N, G), rstd (N, G)) in float64."""
    x = _f64(x)
    n = x.shape[0]
    g = x.reshape(n, num_groups, -1)
    mean = g.mean(axis=2)
    var = g.var(axis=2)
    rstd = 1.0 / np.sqrt(var + eps)
    y = ((g - mean[..., None]) * rstd[..., None]).reshape(x.shape)
    return _affine(y, weight, bias, _chan_shape(x)), mean, rstd


def _norm_axes(x: F64, normalized_shape: int | Sequence[int]
               ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (int(normalized_shape),)
    k = len(normalized_shape)
    if tuple(x.shape[x.ndim - k:]) != tuple(normalized_shape):
        raise ValueError(f"normalized_shape {normalized_shape} does not end x's shape {x.shape}")
    return tuple(range(x.ndim - k, x.ndim)), tuple(normalized_shape)


def ref_layer_norm(x: ArrayLike, normalized_shape: int | Sequence[int], weight: ArrayLike | None = None,
                   bias: ArrayLike | None = None, eps: float = 1e-5) -> tuple[F64, F64, F64]:
    """Returns (y, mean, rstd) in float64; mean/rstd in keepdims shape."""
    x = _f64(x)
    axes, nshape = _norm_axes(x, normalized_shape)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * rstd
    return _affine(y, weight, bias, nshape), mean, rstd


def ref_rms_norm(x: ArrayLike, normalized_shape: int | Sequence[int], weight: ArrayLike | None = None,
                 eps: float | None = None) -> F64:
    """float64 RMSNorm; ``eps=None`` means finfo(x.dtype).eps of the *input* dtype."""
    x = np.asarray(x)
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    x = _f64(x)
    axes, nshape = _norm_axes(x, normalized_shape)
    ms = np.mean(x * x, axis=axes, keepdims=True)
    y = x / np.sqrt(ms + eps)
    return _affine(y, weight, None, nshape)


def ref_channel_layer_norm(x: ArrayLike, weight: ArrayLike | None = None, bias: ArrayLike | None = None,
                           eps: float = 1e-6) -> F64:
    x = _f64(x)
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return _affine(y, weight, bias, _chan_shape(x))


def ref_normalize_image(images: ArrayLike, mean: ArrayLike = 0.0, std: ArrayLike = 1.0,
                        mode: str = "standard", scale: float | None = None,
                        swap_rb: bool = False, layout: str = "NCHW", eps: float = 1e-4) -> F64:
    """normalize_image in float64 on an (N, H, W, C) or (H, W, C) array: mode "standard"
    (x * scale - mean[c]) / std[c]; the per-image modes of albumentations' Normalize on the
    raw values ("image", "image_per_channel" clipped to [-20, 20]; "min_max",
    "min_max_per_channel")."""
    raw = np.asarray(images)
    x = raw.astype(np.float64)
    if swap_rb:
        order = list(range(x.shape[-1]))
        order[0], order[2] = 2, 0
        x = x[..., order]
    if mode == "standard":
        if scale is None:
            scale = {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(
                raw.dtype, 1.0)
        y = (x * scale - _f64(mean)) / _f64(std)
    else:
        axes = tuple(range(x.ndim - 3, x.ndim - (1 if mode.endswith("per_channel") else 0)))
        if mode.startswith("image"):
            m, s = x.mean(axis=axes, keepdims=True), x.std(axis=axes, keepdims=True)
            y = np.clip((x - m) / (s + eps), -20.0, 20.0)
        else:
            lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
            y = (x - lo) / (hi - lo + eps)
    return np.moveaxis(y, -1, -3) if layout == "NCHW" else y
