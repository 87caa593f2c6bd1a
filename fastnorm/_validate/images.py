"""The checks of normalize_image's arguments (fastnorm._image)."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .core import flag, native, real_scalar


# normalize_image

IMAGE_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.float32, np.float64))
IMAGE_OUTPUT_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float16, np.float64))
IMAGE_MODES = ("standard", "image", "image_per_channel", "min_max", "min_max_per_channel")
IMAGE_LAYOUTS = ("NCHW", "NHWC")


class ImageBatch:
    """The images of one normalize_image call as the kernel reads them, all of one native
    dtype: `stack`, one (N, H, W, C) array when an array was given (a 2-D image gets a
    channel axis of length 1, one image an N axis of 1; views), else None; `arrays`, a
    sequence's N images as (H, W, C) arrays; `single`: one image was given (the result has
    no N axis)."""

    def __init__(self, stack: NDArray[Any] | None, arrays: list[NDArray[Any]] | None, single: bool,
                 shape: tuple[int, int, int], dtype: np.dtype[Any]) -> None:
        self.stack, self.arrays, self.single, self.dtype = stack, arrays, single, dtype
        self.n = stack.shape[0] if stack is not None else len(arrays or ())
        self.h, self.w, self.c = shape

    def images(self) -> list[NDArray[Any]]:
        """The arrays the kernel reads (for the overlap check of out)."""
        return [self.stack] if self.stack is not None else list(self.arrays or ())


def _image_dtype_check(arr: NDArray[Any], name: str) -> None:
    if native(arr.dtype) in IMAGE_DTYPES:
        return
    raise TypeError(f"{name} has dtype {arr.dtype}; normalize_image takes uint8, uint16, "
                    f"float32 or float64 images")


def _kernel_ready(arr: NDArray[Any]) -> NDArray[Any]:
    """arr itself when the kernel can read it (native byte order, aligned, strides in whole
    elements), else a C-contiguous copy that it can."""
    if (arr.dtype.isnative and arr.flags.aligned
            and all(s % arr.itemsize == 0 for s in arr.strides)):
        return arr
    return np.ascontiguousarray(arr, dtype=native(arr.dtype))


def image_batch(images: object) -> ImageBatch:
    """`images` of normalize_image: one image (H, W) or (H, W, C), a batch (N, H, W, C), or a
    sequence of (H, W[, C]) arrays of one shape and dtype. Returns an ImageBatch."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("images is an empty sequence; give at least one image")
        items: list[NDArray[Any]] = []
        for i, item in enumerate(images):
            name = f"images[{i}]"
            if not isinstance(item, np.ndarray):
                try:
                    item = np.asarray(item)
                except Exception as exc:
                    raise TypeError(f"{name} must be an array, got {type(item).__name__}") \
                        from exc
            _image_dtype_check(item, name)
            if item.ndim not in (2, 3):
                raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got "
                                 f"{item.shape}")
            if not items:
                first_shape = item.shape
            else:
                if item.shape != first_shape:
                    raise ValueError(f"the images of a sequence must have one shape: "
                                     f"{name} has shape {item.shape}, images[0] "
                                     f"{first_shape}")
                if native(item.dtype) != items[0].dtype:
                    raise ValueError(f"the images of a sequence must have one dtype: {name} "
                                     f"has {item.dtype}, images[0] {items[0].dtype}")
            items.append(_kernel_ready(item if item.ndim == 3 else item[:, :, None]))
        h, w, c = items[0].shape
        stack: NDArray[Any] | None = None
        arrays: list[NDArray[Any]] | None = items
        single, dtype = False, native(items[0].dtype)
    else:
        if not isinstance(images, np.ndarray):
            try:
                images = np.asarray(images)
            except Exception as exc:
                raise TypeError(f"images must be an array or a sequence of arrays, got "
                                f"{type(images).__name__}") from exc
        _image_dtype_check(images, "images")
        if images.ndim not in (2, 3, 4):
            raise ValueError(f"images must be (H, W), (H, W, C) or (N, H, W, C), got shape "
                             f"{images.shape}")
        x = _kernel_ready(images)
        if x.ndim == 2:
            x = x[:, :, None]
        single = x.ndim == 3
        stack = x[None] if single else x
        arrays = None
        h, w, c = stack.shape[1:]
        dtype = native(stack.dtype)
    if c < 1:
        raise ValueError("images must have at least one channel, got C = 0")
    return ImageBatch(stack, arrays, single, (h, w, c), dtype)


def choice(value: object, name: str, options: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {', '.join(map(repr, options))}; got "
                        f"{type(value).__name__}")
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of "
                         f"{', '.join(map(repr, options))}")
    return value


def image_output_dtype(value: object) -> np.dtype[Any]:
    """dtype of normalize_image: float32, float16 or float64."""
    try:
        dt: np.dtype[Any] = np.dtype(value)  # type: ignore[call-overload]  # checked below
    except TypeError as exc:
        raise TypeError(f"dtype must be float32, float16 or float64, got {value!r}") from exc
    if dt not in IMAGE_OUTPUT_DTYPES:
        raise TypeError(f"dtype must be float32, float16 or float64, got {dt}")
    return dt


def channel_values(value: object, name: str, channels: int, default: float,
                   nonzero: bool = False) -> NDArray[np.float64]:
    """mean / std of normalize_image: None (default), a finite real scalar, or a sequence of
    `channels` of them (none 0 with `nonzero`); returned as a float64 array of shape
    (channels,)."""
    if value is None:
        return np.full(channels, float(default))
    given = np.asarray(value)
    if given.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number or a sequence of {channels} of them, "
                        f"got {value!r}")
    arr = given.astype(np.float64)
    if arr.ndim == 0:
        arr = np.full(channels, float(arr))
    elif arr.shape != (channels,):
        raise ValueError(f"{name} must be a scalar or have one value per channel ({channels}), "
                         f"got shape {arr.shape}")
    values = arr.tolist()                 # (a few numbers: Python is quicker than ufuncs)
    if not all(map(math.isfinite, values)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if nonzero and 0.0 in values:
        raise ValueError(f"{name} must not be 0, got {values}")
    return arr


def swap_rb(value: object, channels: int) -> bool:
    """swap_rb of normalize_image: a bool; True needs at least 3 channels."""
    swap = flag(value, "swap_rb")
    if swap and channels < 3:
        raise ValueError(f"swap_rb exchanges the first and third channels and needs at "
                         f"least 3, the images have {channels}")
    return swap


def no_constants_in_per_image_mode(mode: str, **constants: object) -> None:
    """mean, std and scale must be None in the per-image modes of normalize_image."""
    for name, value in constants.items():
        if value is not None:
            raise ValueError(f"{name} must be None in mode {mode!r}: the per-image modes "
                             f"take each image's own statistics")


def image_scale(value: object, dtype: np.dtype[Any]) -> float:
    """scale of normalize_image: None means 1/255 for uint8, 1/65535 for uint16, 1 for
    floats; else a finite real."""
    if value is None:
        return {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(dtype, 1.0)
    v = real_scalar(value, "scale")
    if not math.isfinite(v):
        raise ValueError(f"scale must be finite, got {value!r}")
    return v


def image_out(value: object, shape: Sequence[int], dtype: DTypeLike,
              batch: ImageBatch) -> NDArray[Any] | None:
    """out= of normalize_image: a writable ndarray of exactly `shape` and `dtype` whose
    strides are whole elements, sharing no memory with the images."""
    if value is None:
        return None
    if not isinstance(value, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(value).__name__}")
    if value.shape != tuple(shape):
        raise ValueError(f"out must have the result's shape {tuple(shape)}, got {value.shape}")
    if value.dtype != dtype:
        raise ValueError(f"out must have the result's dtype {dtype}, got {value.dtype}")
    if not value.flags.writeable:
        raise ValueError("out must be writable")
    if not value.flags.aligned or any(s % value.itemsize for s in value.strides):
        raise ValueError("out must be aligned, with strides in whole elements")
    if value.size:
        for k, arr in enumerate(batch.images()):
            if np.may_share_memory(value, arr):
                where = "images" if batch.stack is not None else f"images[{k}]"
                raise ValueError(f"out overlaps {where}; pass a separate buffer")
    return value
