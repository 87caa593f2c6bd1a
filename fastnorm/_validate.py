"""Validation of every public argument, in one place.

Each function checks one argument and returns it in the form the plans use. All of them run
before any buffer is written, so a failed call leaves everything the caller handed in as it
was. Messages name the offending argument.
"""
import math
import numbers
import operator

import numpy as np

from . import _layout

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy < 1.25
    from numpy import AxisError

# dtypes the kernels compute in natively; float16 is computed in float32
NATIVE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FLOAT_DTYPES = (np.dtype(np.float16),) + NATIVE_DTYPES


# integer dtypes the statistics accumulate exactly (moments, Moments.update); bool is not
# one of them
INTEGER_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16,
                                              np.uint32, np.int32, np.int64))

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)


def native(dtype):
    """The dtype in this machine's byte order (data read from big-endian files has '>f4')."""
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def is_float(dtype):
    """float16, float32 or float64, in either byte order."""
    return native(dtype) in FLOAT_DTYPES


def is_integer(dtype):
    """One of INTEGER_DTYPES, in either byte order."""
    return native(dtype) in INTEGER_DTYPES


def compute_dtype(dtype):
    """Kernel dtype for a supported input dtype: float16 computes in float32; the other
    floats and the integers of INTEGER_DTYPES (2-byte ones included) in their own type, in
    native byte order."""
    dtype = native(dtype)
    if dtype == _FLOAT16:
        return _FLOAT32
    if dtype in NATIVE_DTYPES or dtype in INTEGER_DTYPES:
        return dtype
    raise TypeError(f"no kernel dtype for {dtype}")


def array_input(x, name="x", min_ndim=0):
    """x as an ndarray of float16/32/64 with at least min_ndim dims (no copy for arrays)."""
    if type(x) is not np.ndarray:       # array-likes, and subclasses (np.matrix) as plain arrays
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{name} must be an array of floats, got {type(x).__name__}") \
                from exc
    if not is_float(x.dtype):
        raise TypeError(f"{name} has dtype {x.dtype}; fastnorm supports float16, float32 "
                        f"and float64")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape "
                         f"{x.shape}")
    return x


def stats_input(x, name="x"):
    """x of moments / Moments.update: an ndarray of float16/32/64 or of one of the integer
    dtypes accumulated exactly (no copy for arrays); bool and the rest: TypeError."""
    if type(x) is not np.ndarray:
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}") \
                from exc
    if not (is_float(x.dtype) or is_integer(x.dtype)):
        raise TypeError(f"{name} has dtype {x.dtype}; fastnorm's statistics support float16, "
                        f"float32, float64, uint8, int8, uint16, int16, uint32, int32 and "
                        f"int64")
    return x


def result_dtype(dtype, default):
    """The `dtype=` argument of moments: a float dtype, default that of x."""
    if dtype is None:
        return native(np.dtype(default))
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be a float dtype, got {dtype!r}") from exc
    if not is_float(dt):
        raise TypeError(f"dtype must be float16, float32 or float64, got {dt}")
    return native(dt)


def num_threads(value):
    """None or a positive int."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"num_threads must be None or a positive int, "
                        f"got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"num_threads must be a positive int, got {value}")
    return int(value)


def real_scalar(value, name):
    if type(value) is float:             # the common case, without the ABC check
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError as exc:
        raise ValueError(f"{name} is out of range: {value}") from exc


def eps(value, name="eps"):
    v = real_scalar(value, name)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return v


def momentum(value):
    v = real_scalar(value, "momentum")
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"momentum must be a number in [0, 1], got {value}")
    return v


def flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def _as_array(value, name):
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:          # ragged nesting and other things NumPy refuses
        raise TypeError(f"{name} must be an array of floats, got {type(value).__name__}: "
                        f"{exc}") from exc


def param(value, name, shape, dtype):
    """An affine parameter (weight, bias, running stats read-only): a float array of the
    given shape, returned C-contiguous in the kernel dtype; None stays None."""
    if value is None:
        return None
    arr = _as_array(value, name)
    if not is_float(arr.dtype):
        raise TypeError(f"{name} has dtype {arr.dtype}; it must be a float array")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=dtype)


def running_stat(value, name, channels, updated):
    """running_mean / running_var: float array of shape (channels,); must be a writable
    ndarray when it is updated in place (training)."""
    if value is None:
        return None
    if updated:
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{name} is updated in place and must be a numpy array, "
                            f"got {type(value).__name__}")
        if not value.flags.writeable:
            raise ValueError(f"{name} is updated in place and must be writable")
    arr = _as_array(value, name)
    if not is_float(arr.dtype):
        raise TypeError(f"{name} has dtype {arr.dtype}; it must be a float array")
    if arr.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {arr.shape}")
    return arr


def running_stats(running_mean, running_var, channels, updated):
    """running_mean and running_var: both None or both float arrays of shape (channels,)
    (writable ndarrays when `updated` in place)."""
    if (running_mean is None) != (running_var is None):
        missing = "running_var" if running_var is None else "running_mean"
        raise ValueError(f"running_mean and running_var go together: {missing} is None")
    return (running_stat(running_mean, "running_mean", channels, updated),
            running_stat(running_var, "running_var", channels, updated))


def channel_affine(x, weight, bias):
    """For an (N, C, *spatial) op with per-channel weight/bias: (n, channels, inner, weight,
    bias), the parameters in the kernel dtype."""
    n, channels = x.shape[:2]
    cdt = compute_dtype(x.dtype)
    return (n, channels, math.prod(x.shape[2:]), param(weight, "weight", (channels,), cdt),
            param(bias, "bias", (channels,), cdt))


def row_affine(x, shape_arg, weight, bias):
    """For an op over the trailing dims (LayerNorm, RMSNorm): (x, normalized shape, rows,
    row length, weight, bias), the parameters in the kernel dtype."""
    x = array_input(x, min_ndim=1)
    shape = normalized_shape(shape_arg, x.shape)
    cdt = compute_dtype(x.dtype)
    return (x, shape, math.prod(x.shape[:-len(shape)]), math.prod(shape),
            param(weight, "weight", shape, cdt), param(bias, "bias", shape, cdt))


def normalized_shape(value, x_shape):
    """int or sequence of ints matching the trailing dims of x; returned as a tuple."""
    if type(value) is int or (isinstance(value, (numbers.Integral, np.integer))
                              and not isinstance(value, (bool, np.bool_))):
        shape = (int(value),)
    else:
        try:
            shape = tuple(operator.index(d) for d in value)
        except TypeError as exc:
            raise TypeError(f"normalized_shape must be an int or a sequence of ints, "
                            f"got {value!r}") from exc
    if len(shape) == 0:
        raise ValueError("normalized_shape must not be empty")
    if len(shape) > len(x_shape) or tuple(x_shape[len(x_shape) - len(shape):]) != shape:
        raise ValueError(f"normalized_shape {shape} does not match the trailing dimensions "
                         f"of x with shape {tuple(x_shape)}")
    return shape


def num_groups(value, channels):
    g = positive_int(value, "num_groups")
    if channels % g:
        raise ValueError(f"num_groups={g} must divide the number of channels {channels}")
    return g


def out(value, x, **params):
    """The `out=` buffer: None, or a writable array of x's shape and dtype in a native layout
    (C-contiguous or channels-last) that is x itself (in place) or does not overlap x, and
    overlaps none of the `params`
    (read, or for running stats written, while out is written). Returns (out, in_place)."""
    result = _out_buffer(value, x)
    _out_apart(value, params)
    return result


def _out_buffer(value, x):
    if value is None:
        return None, False
    if value is x:                       # in place: the common fast path
        if _layout.of(x) is None:
            raise ValueError("out=x normalizes in place and needs x in a native layout "
                             "(C-contiguous or channels-last)")
        if not x.flags.writeable:
            raise ValueError("out=x normalizes in place and needs x writable")
        return value, True
    if not isinstance(value, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(value).__name__}")
    if value.shape != x.shape:
        raise ValueError(f"out must have the shape of x {x.shape}, got {value.shape}")
    if native(value.dtype) != native(x.dtype):
        raise ValueError(f"out must have the dtype of x ({x.dtype}), got {value.dtype}")
    if _layout.of(value) is None:
        raise ValueError("out must be C-contiguous or channels-last")
    if not value.flags.writeable:
        raise ValueError("out must be writable")
    in_place = False
    if value.size and np.may_share_memory(value, x):
        same_view = (value.__array_interface__["data"][0] == x.__array_interface__["data"][0]
                     and value.strides == x.strides)
        if not same_view:
            raise ValueError("out overlaps x without being x itself; pass out=x to "
                             "normalize in place, or a separate buffer")
        in_place = True
    return value, in_place


def _out_apart(out, arrays):
    if out is None:
        return
    for name, arr in arrays.items():
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"out overlaps {name}; pass a separate buffer or a copy of "
                             f"{name}")


def axes(axis, ndim):
    """axis (None, int or tuple of ints, negatives allowed) as a sorted tuple."""
    if axis is None:
        return tuple(range(ndim))
    items = (axis,) if not isinstance(axis, (tuple, list)) else tuple(axis)
    result = []
    for a in items:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (numbers.Integral, np.integer)):
            raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}")
        a = int(a)
        if not -ndim <= a < ndim:
            raise AxisError(a, ndim, "axis")
        result.append(a % ndim)
    if len(set(result)) != len(result):
        raise ValueError(f"axis contains a repeated axis: {axis!r}")
    return tuple(sorted(result))


def ddof(value):
    """ddof: a real number, NumPy's meaning (count - ddof <= 0 gives inf or NaN, with
    NumPy's RuntimeWarning, at the division)."""
    return real_scalar(value, "ddof")


# ---------------------------------------------------------------------------------------
# fastnorm.dask (the adapter hands in dask's Array type: nothing here imports dask)

def dask_array(x, array_type, integers, min_ndim=0, name="x"):
    """A dask array of floats (float16/32/64), or for the statistics (`integers`) also of
    integers; bool and other dtypes are refused."""
    if not isinstance(x, array_type):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(x).__name__} "
                        f"(fastnorm's own functions take NumPy arrays)")
    dt = np.dtype(x.dtype)
    if not (is_float(dt) or (integers and dt.kind in "ui")):
        kinds = "floats or integers" if integers else "floats (float16, float32, float64)"
        raise TypeError(f"{name} has dtype {dt}; fastnorm.dask takes {kinds} here")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape "
                         f"{x.shape}")
    return x


def split_every(value):
    """split_every of a dask reduction: None, an int >= 2, or a dict {axis: int >= 2}."""
    if value is None:
        return None
    items = value.values() if isinstance(value, dict) else (value,)
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"split_every must be None, an int or a dict of ints, got "
                            f"{value!r}")
        if v < 2:
            raise ValueError(f"split_every must be >= 2, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------
# fastnorm.torch (the adapter hands in the tensor and torch's types: nothing here imports torch)

def tensor(value, name, grad_enabled, numpy_dtypes, strided):
    """A torch.Tensor argument (fastnorm.torch translates it; torch is not imported here):
    a dense (`strided` layout) CPU tensor of a dtype in `numpy_dtypes` (torch dtype -> NumPy
    dtype), not one that autograd would need a gradient through. Returns the NumPy dtype."""
    if grad_enabled and value.requires_grad:
        raise ValueError(f"{name} requires grad: fastnorm has no autograd; call it under "
                         f"torch.no_grad() or torch.inference_mode(), or pass "
                         f"{name}.detach()")
    if not value.is_cpu:
        raise ValueError(f"{name} is on device {value.device}; fastnorm takes CPU tensors")
    if value.layout is not strided:
        raise TypeError(f"{name} is a {value.layout} tensor; fastnorm takes dense (strided) "
                        f"tensors")
    dtype = numpy_dtypes.get(value.dtype)
    if dtype is None:
        raise TypeError(f"{name} has dtype {value.dtype}; fastnorm supports float16, "
                        f"float32 and float64 tensors")
    return dtype


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

    def __init__(self, stack, arrays, single, shape, dtype):
        self.stack, self.arrays, self.single, self.dtype = stack, arrays, single, dtype
        self.n = len(arrays) if stack is None else stack.shape[0]
        self.h, self.w, self.c = shape

    def images(self):
        """The arrays the kernel reads (for the overlap check of out)."""
        return [self.stack] if self.stack is not None else self.arrays


def _image_dtype_check(arr, name):
    if native(arr.dtype) in IMAGE_DTYPES:
        return
    raise TypeError(f"{name} has dtype {arr.dtype}; normalize_image takes uint8, uint16, "
                    f"float32 or float64 images")


def _kernel_ready(arr):
    """arr itself when the kernel can read it (native byte order, aligned, strides in whole
    elements), else a C-contiguous copy that it can."""
    if (arr.dtype.isnative and arr.flags.aligned
            and all(s % arr.itemsize == 0 for s in arr.strides)):
        return arr
    return np.ascontiguousarray(arr, dtype=native(arr.dtype))


def image_batch(images):
    """`images` of normalize_image: one image (H, W) or (H, W, C), a batch (N, H, W, C), or a
    sequence of (H, W[, C]) arrays of one shape and dtype. Returns an ImageBatch."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("images is an empty sequence; give at least one image")
        arrays = []
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
            if not arrays:
                first_shape = item.shape
            else:
                if item.shape != first_shape:
                    raise ValueError(f"the images of a sequence must have one shape: "
                                     f"{name} has shape {item.shape}, images[0] "
                                     f"{first_shape}")
                if native(item.dtype) != arrays[0].dtype:
                    raise ValueError(f"the images of a sequence must have one dtype: {name} "
                                     f"has {item.dtype}, images[0] {arrays[0].dtype}")
            arrays.append(_kernel_ready(item if item.ndim == 3 else item[:, :, None]))
        h, w, c = arrays[0].shape
        stack, single = None, False
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
    if c < 1:
        raise ValueError("images must have at least one channel, got C = 0")
    dtype = native((stack if stack is not None else arrays[0]).dtype)
    return ImageBatch(stack, arrays, single, (h, w, c), dtype)


def choice(value, name, options):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {', '.join(map(repr, options))}; got "
                        f"{type(value).__name__}")
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of "
                         f"{', '.join(map(repr, options))}")
    return value


def image_output_dtype(value):
    """dtype of normalize_image: float32, float16 or float64."""
    try:
        dt = np.dtype(value)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32, float16 or float64, got {value!r}") from exc
    if dt not in IMAGE_OUTPUT_DTYPES:
        raise TypeError(f"dtype must be float32, float16 or float64, got {dt}")
    return dt


def channel_values(value, name, channels, default, nonzero=False):
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


def swap_rb(value, channels):
    """swap_rb of normalize_image: a bool; True needs at least 3 channels."""
    swap = flag(value, "swap_rb")
    if swap and channels < 3:
        raise ValueError(f"swap_rb exchanges the first and third channels and needs at "
                         f"least 3, the images have {channels}")
    return swap


def no_constants_in_per_image_mode(mode, **constants):
    """mean, std and scale must be None in the per-image modes of normalize_image."""
    for name, value in constants.items():
        if value is not None:
            raise ValueError(f"{name} must be None in mode {mode!r}: the per-image modes "
                             f"take each image's own statistics")


def image_scale(value, dtype):
    """scale of normalize_image: None means 1/255 for uint8, 1/65535 for uint16, 1 for
    floats; else a finite real."""
    if value is None:
        return {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(dtype, 1.0)
    v = real_scalar(value, "scale")
    if not math.isfinite(v):
        raise ValueError(f"scale must be finite, got {value!r}")
    return v


def image_out(value, shape, dtype, batch):
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
