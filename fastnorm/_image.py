"""normalize_image: decoded images to a model's input in one pass (DESIGN.md section 10).

Every preprocessing convention is a per-channel affine map y = (x - M[c]) * a[c] + b[c] of
the raw pixel values. The plan validates the call (fastnorm._validate), computes M, a and b
in float64 and hands the kernel (_kernels/images.pxi: normalize_image_rows) where each image is and how
its pixels and the output are strided, so that one pass reads each HWC row, widens it,
applies the fused multiply-add and writes C planes (NCHW) or pixels (NHWC):

  mode "standard"              M = mean / scale, a = scale / std (torchvision, Hugging Face,
                               OpenCV blobFromImage, albumentations Normalize)
  "image", "image_per_channel" M = m, a = 1 / (s + eps) from each image's (or each of its
                               channels') mean m and std s, clipped to [-20, 20]
  "min_max", "min_max_per_channel"  M = min, a = 1 / (max - min + eps)

The kernel applies it as fma(x - h, a, c), h = M rounded to the compute type and its low part
folded into c, so a centre large against the spread loses no digits (DESIGN.md section 2).

The per-image modes are statistics then apply, as InstanceNorm: the statistics engine
(exact integer sums for integer images, fastnorm._stats) gives one parameter set per image.
No copy of the input is made for any strides in whole elements (contiguous HWC, planar views
x_chw.transpose(1, 2, 0), crops, a list of separate images); swap_rb only changes where
each output channel is read in the pixel.
"""
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _dispatch, _threads
from . import _validate as V
from ._raw import raw_moments

# dtype -> the kernel's code (_kernels/images.pxi: IMG_* and OUT_*)
_INPUT_CODES = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1, np.dtype(np.float32): 2,
                np.dtype(np.float64): 3}
_OUTPUT_CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2}

CLIP = 20.0         # albumentations' bound on the per-image standardized values


def normalize_image(images: object, mean: object = None, std: object = None, *,
                    mode: object = "standard", scale: object = None, swap_rb: object = False,
                    layout: object = "NCHW", dtype: object = np.float32, eps: object = 1e-4,
                    out: object = None, num_threads: object = None) -> NDArray[Any]:
    """Normalize decoded images into a model's input in one pass.

    images: one image (H, W) or (H, W, C), a batch (N, H, W, C), or a sequence of (H, W[, C])
    arrays of one shape and dtype; uint8, uint16, float32 or float64, any strides.
    mode "standard": ``y = (x * scale - mean[c]) / std[c]``, mean and std scalars or one
    value per output channel (defaults 0 and 1), scale None meaning 1/255 for uint8, 1/65535
    for uint16 and 1 for floats. The per-image modes of albumentations' Normalize
    ("image", "image_per_channel", "min_max", "min_max_per_channel") take each image's
    statistics of the raw values and no mean/std/scale. swap_rb exchanges the first and
    third input channels (BGR <-> RGB, BGRA <-> RGBA). layout "NCHW" returns (N, C, H, W)
    ((C, H, W) for one image), "NHWC" (N, H, W, C) ((H, W, C)); dtype float32, float16 or
    float64. out: a writable array of exactly the result's shape and dtype (one slot of a
    preallocated batch, say), written and returned.

    Parameters
    ----------
    images : array_like or sequence of array_like
        ``(H, W)``, ``(H, W, C)``, ``(N, H, W, C)``, or a sequence of ``(H, W[, C])`` arrays.
    mean, std : float or sequence of float, optional
        Per output channel ("standard" mode only; defaults 0 and 1).
    mode : str
        "standard", "image", "image_per_channel", "min_max" or "min_max_per_channel".
    scale : float, optional
        Factor applied to the raw values first ("standard" mode only).
    swap_rb : bool
        Reverse the channel order (BGR <-> RGB) on the way.
    layout : {"NCHW", "NHWC"}
        Layout of the result.
    dtype : dtype
        float32 (default), float16 or float64.
    eps : float
        Added to the divisor of the per-image modes.
    out : ndarray, optional
        Where to write the result.
    num_threads : int, optional
        OpenMP threads (default: the OpenMP default at call time).

    Returns
    -------
    ndarray
        The normalized images in `layout` and `dtype`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm as fn
    >>> img = np.array([[[0, 128, 255], [255, 0, 0]]], dtype=np.uint8)   # (H, W, C)
    >>> y = fn.normalize_image(img, mean=0.5, std=0.5)
    >>> print(y.shape, y.dtype)
    (3, 1, 2) float32
    >>> print(y[:, 0, 0].round(3))
    [-1.     0.004  1.   ]
    >>> batch = fn.normalize_image([img, img], swap_rb=True, layout="NHWC", dtype=np.float64)
    >>> print(batch.shape, batch[0, 0, 0].round(3))
    (2, 1, 2, 3) [1.    0.502 0.   ]
    """
    batch = V.image_batch(images)
    mode = V.choice(mode, "mode", V.IMAGE_MODES)
    layout = V.choice(layout, "layout", V.IMAGE_LAYOUTS)
    out_dtype = V.image_output_dtype(dtype)
    n, h, w, c = batch.n, batch.h, batch.w, batch.c
    swap = V.swap_rb(swap_rb, c)
    eps = V.eps(eps)
    nt = _threads.resolve(V.num_threads(num_threads))
    order = list(range(c))                  # the input channel of each output channel
    if swap:
        order[0], order[2] = 2, 0
    if mode == "standard":
        params = _standard_params(batch, mean, std, scale)
    else:
        V.no_constants_in_per_image_mode(mode, mean=mean, std=std, scale=scale)
        params = None
    shape = ((c, h, w) if layout == "NCHW" else (h, w, c)) if batch.single else \
        ((n, c, h, w) if layout == "NCHW" else (n, h, w, c))
    out = V.image_out(out, shape, out_dtype, batch)
    if n * h * w == 0:
        return np.empty(shape, out_dtype) if out is None else out
    clip = mode in ("image", "image_per_channel")
    if params is None:
        params = _per_image_params(batch, mode, eps, order, nt)
    result = np.empty(shape, out_dtype) if out is None else out
    _run(batch, order, result, layout, params, clip, nt)
    return result


def _standard_params(batch: V.ImageBatch, mean: object, std: object, scale: object) -> NDArray[np.float64]:
    """(1, 3C) float64 M, a, b of y = (x - M) * a + b, in output channel order:
    (x * scale - mean) / std = (x - mean / scale) * (scale / std)."""
    c = batch.c
    means = V.channel_values(mean, "mean", c, 0.0)
    stds = V.channel_values(std, "std", c, 1.0, nonzero=True)
    s = V.image_scale(scale, batch.dtype)
    params = np.zeros((1, 3 * c))
    if s == 0:                               # a constant -means / stds
        params[0, 2 * c:] = -means / stds
        return params
    centre = [m / s for m in means.tolist()]
    if all(map(math.isfinite, centre)):
        params[0, :c] = centre
    else:                                    # a scale so small that mean / scale overflows
        params[0, 2 * c:] = -means / stds
    params[0, c:2 * c] = s / stds
    return params


def _per_image_params(batch: V.ImageBatch, mode: str, eps: float, order: list[int],
                      nt: int) -> NDArray[np.float64]:
    """(N, 3C) float64 parameter sets M, a, b (y = (x - M) * a + b, b = 0) from each image's
    statistics of its raw values, permuted to the output channel order."""
    n, c = batch.n, batch.c
    per_channel = mode.endswith("per_channel")
    if mode.startswith("min_max"):
        if batch.stack is not None:
            axes: tuple[int, ...] | None = (1, 2) if per_channel else (1, 2, 3)
            lo, hi = (f(batch.stack, axis=axes).reshape(n, -1) for f in (np.min, np.max))
        else:
            axes = (0, 1) if per_channel else None
            lo = np.array([np.min(img, axis=axes) for img in batch.images()]).reshape(n, -1)
            hi = np.array([np.max(img, axis=axes) for img in batch.images()]).reshape(n, -1)
        lo = lo.astype(np.float64)
        centre = lo
        with np.errstate(all="ignore"):
            a = 1.0 / (hi - lo + eps)
    else:
        centre, std = _image_moments(batch, per_channel, nt)
        with np.errstate(all="ignore"):
            a = 1.0 / (std + eps)
    if not per_channel:
        centre, a = np.repeat(centre, c, axis=1), np.repeat(a, c, axis=1)
    return np.ascontiguousarray(np.concatenate(
        [centre[:, order], a[:, order], np.zeros((n, c))], axis=1))


def _image_moments(batch: V.ImageBatch, per_channel: bool, nt: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and std (ddof 0) of each image, (N, C) per channel or (N, 1), in float64: the
    statistics engine (exact integer sums for integer images)."""
    if batch.stack is not None:
        raw = raw_moments(batch.stack, (1, 2) if per_channel else (1, 2, 3), nt)
        mean, m2, count = raw.mean, raw.m2, raw.count
    else:
        parts = [raw_moments(img, (0, 1) if per_channel else (0, 1, 2), nt)
                 for img in batch.images()]
        mean = np.array([p.mean for p in parts])
        m2 = np.array([p.m2 for p in parts])
        count = parts[0].count
    return mean.reshape(batch.n, -1), np.sqrt(m2.reshape(batch.n, -1) / count)


def _run(batch: V.ImageBatch, order: list[int], result: NDArray[Any], layout: str, params: NDArray[np.float64],
         clip: bool, nt: int) -> None:
    """One kernel call over the batch: where each image is, its strides and the output's, in
    elements."""
    isz = batch.dtype.itemsize
    n = batch.n
    y = result if not batch.single else result[None]
    ys = [s // result.itemsize for s in y.strides]
    if layout == "NCHW":
        dn, dc, dh, dw = ys
    else:
        dn, dh, dw, dc = ys
    out_rows = dh == batch.w * dw
    if batch.stack is not None:             # one array: origins by its batch stride
        x = batch.stack
        sh, sw, sc = (s // isz for s in x.strides[1:])
        origins = np.arange(n, dtype=np.uintp)
        origins *= x.strides[0] % (1 << 64)            # (a negative stride wraps around)
        origins += x.__array_interface__["data"][0]
        row_stride, pixel_stride = np.full(n, sh, np.intp), np.full(n, sw, np.intp)
        offsets = np.empty((n, batch.c), np.intp)
        offsets[:] = np.multiply(order, sc, dtype=np.intp)
        rows_contiguous = np.full(n, sh == batch.w * sw and out_rows, np.uint8)
    else:
        origins = np.array([a.__array_interface__["data"][0] for a in batch.images()],
                           np.uintp)
        st = np.array([a.strides for a in batch.images()], dtype=np.intp) // isz
        row_stride, pixel_stride = np.ascontiguousarray(st[:, 0]), np.ascontiguousarray(st[:, 1])
        offsets = np.ascontiguousarray(st[:, 2:3] * np.array(order, dtype=np.intp)[None, :])
        # rows that follow each other in the input and the output run as one span of pixels
        rows_contiguous = ((row_stride == batch.w * pixel_stride) & out_rows).astype(np.uint8)
    _dispatch.kernels().normalize_image_rows(
        origins, row_stride, pixel_stride, offsets, batch.h, batch.w,
        _INPUT_CODES[batch.dtype], y.__array_interface__["data"][0], dn, dc, dh, dw,
        _OUTPUT_CODES[result.dtype], params, rows_contiguous, clip, -CLIP, CLIP, nt)
