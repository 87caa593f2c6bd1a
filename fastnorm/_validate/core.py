"""The checks of arrays, parameters, out, axes and scalars (fastnorm._validate).

Each function checks one argument and returns it in the form the plans use. All of them run
before any buffer is written, so a failed call leaves everything the caller handed in as it
was. Messages name the offending argument.
"""
import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .. import _layout

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy < 1.25
    from numpy import AxisError  # type: ignore[attr-defined,no-redef]  # NumPy 2 stubs lack it

# dtypes the kernels compute in natively; float16 is computed in float32
NATIVE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FLOAT_DTYPES = (np.dtype(np.float16),) + NATIVE_DTYPES


# integer dtypes the statistics accumulate exactly (moments, Moments.update); bool is not
# one of them
INTEGER_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16,
                                              np.uint32, np.int32, np.int64))

Array = NDArray[Any]      # an ndarray of any dtype (the checks find out which)

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)


def native(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype in this machine's byte order (data read from big-endian files has '>f4')."""
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def is_float(dtype: np.dtype[Any]) -> bool:
    """float16, float32 or float64, in either byte order."""
    return native(dtype) in FLOAT_DTYPES


def is_integer(dtype: np.dtype[Any]) -> bool:
    """One of INTEGER_DTYPES, in either byte order."""
    return native(dtype) in INTEGER_DTYPES


def compute_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Kernel dtype for a supported input dtype: float16 computes in float32; the other
    floats and the integers of INTEGER_DTYPES (2-byte ones included) in their own type, in
    native byte order."""
    dtype = native(dtype)
    if dtype == _FLOAT16:
        return _FLOAT32
    if dtype in NATIVE_DTYPES or dtype in INTEGER_DTYPES:
        return dtype
    raise TypeError(f"no kernel dtype for {dtype}")


def is_dask_array(x: object) -> bool:
    """Whether x is a dask collection (told by its type's module: dask is not imported)."""
    return type(x).__module__.partition(".")[0] == "dask"


def _in_memory(x: object, name: str, kind: str, dask_instead: str) -> Array:
    """x as an ndarray (no copy for arrays; array-likes and subclasses such as np.matrix as
    plain arrays). A dask array is refused rather than gathered into memory: `dask_instead`
    names the fastnorm.dask function that takes it."""
    if type(x) is np.ndarray:
        return x
    if is_dask_array(x):
        raise TypeError(f"{name} is a dask array ({type(x).__module__}."
                        f"{type(x).__qualname__}); fastnorm's in-memory functions do not "
                        f"gather it into one NumPy array: use {dask_instead} instead")
    try:
        return np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of {kind}, got {type(x).__name__}") from exc


def array_input(x: object, name: str = "x", min_ndim: int = 0) -> Array:
    """x as an ndarray of float16/32/64 with at least min_ndim dims (no copy for arrays)."""
    x = _in_memory(x, name, "floats", "the function of the same name in fastnorm.dask")
    if not is_float(x.dtype):
        raise TypeError(f"{name} has dtype {x.dtype}; fastnorm supports float16, float32 "
                        f"and float64")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape "
                         f"{x.shape}")
    return x


def stats_input(x: object, name: str = "x") -> Array:
    """x of moments / Moments.update: an ndarray of float16/32/64 or of one of the integer
    dtypes accumulated exactly (no copy for arrays); bool and the rest: TypeError."""
    x = _in_memory(x, name, "numbers", "fastnorm.dask.moments or fastnorm.dask.accumulate")
    if not (is_float(x.dtype) or is_integer(x.dtype)):
        raise TypeError(f"{name} has dtype {x.dtype}; fastnorm's statistics support float16, "
                        f"float32, float64, uint8, int8, uint16, int16, uint32, int32 and "
                        f"int64")
    return x


def result_dtype(dtype: DTypeLike | None, default: DTypeLike) -> np.dtype[Any]:
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


def num_threads(value: object) -> int | None:
    """None or a positive int."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"num_threads must be None or a positive int, "
                        f"got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"num_threads must be a positive int, got {value}")
    return int(value)


def real_scalar(value: object, name: str) -> float:
    if type(value) is float:             # the common case, without the ABC check
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError as exc:
        raise ValueError(f"{name} is out of range: {value}") from exc


def eps(value: object, name: str = "eps") -> float:
    v = real_scalar(value, name)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return v


def momentum(value: object) -> float:
    v = real_scalar(value, "momentum")
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"momentum must be a number in [0, 1], got {value}")
    return v


def flag(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def positive_int(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def _as_array(value: object, name: str) -> Array:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:          # ragged nesting and other things NumPy refuses
        raise TypeError(f"{name} must be an array of floats, got {type(value).__name__}: "
                        f"{exc}") from exc


def param(value: object, name: str, shape: Sequence[int],
          dtype: np.dtype[Any]) -> Array | None:
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


def running_stat(value: object, name: str, channels: int, updated: bool) -> Array | None:
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


def running_stats(running_mean: object, running_var: object, channels: int,
                  updated: bool) -> tuple[Array | None, Array | None]:
    """running_mean and running_var: both None or both float arrays of shape (channels,)
    (writable ndarrays when `updated` in place)."""
    if (running_mean is None) != (running_var is None):
        missing = "running_var" if running_var is None else "running_mean"
        raise ValueError(f"running_mean and running_var go together: {missing} is None")
    return (running_stat(running_mean, "running_mean", channels, updated),
            running_stat(running_var, "running_var", channels, updated))


def channel_affine(x: Array, weight: object,
                   bias: object) -> tuple[int, int, int, Array | None, Array | None]:
    """For an (N, C, *spatial) op with per-channel weight/bias: (n, channels, inner, weight,
    bias), the parameters in the kernel dtype."""
    n, channels = x.shape[:2]
    cdt = compute_dtype(x.dtype)
    return (n, channels, math.prod(x.shape[2:]), param(weight, "weight", (channels,), cdt),
            param(bias, "bias", (channels,), cdt))


def row_affine(x: object, shape_arg: object, weight: object, bias: object
               ) -> tuple[Array, tuple[int, ...], int, int, Array | None, Array | None]:
    """For an op over the trailing dims (LayerNorm, RMSNorm): (x, normalized shape, rows,
    row length, weight, bias), the parameters in the kernel dtype."""
    x = array_input(x, min_ndim=1)
    shape = normalized_shape(shape_arg, x.shape)
    cdt = compute_dtype(x.dtype)
    return (x, shape, math.prod(x.shape[:-len(shape)]), math.prod(shape),
            param(weight, "weight", shape, cdt), param(bias, "bias", shape, cdt))


def normalized_shape(value: Any, x_shape: Sequence[int]) -> tuple[int, ...]:
    """int or sequence of ints matching the trailing dims of x; returned as a tuple."""
    if type(value) is int or (isinstance(value, (numbers.Integral, np.integer))
                              and not isinstance(value, (bool, np.bool_))):
        shape: tuple[int, ...] = (int(value),)
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


def num_groups(value: object, channels: int) -> int:
    g = positive_int(value, "num_groups")
    if channels % g:
        raise ValueError(f"num_groups={g} must divide the number of channels {channels}")
    return g


def out(value: object, x: Array, **params: object) -> tuple[Array | None, bool]:
    """The `out=` buffer: None, or a writable array of x's shape and dtype in a native layout
    (C-contiguous or channels-last) that is x itself (in place) or does not overlap x, and
    overlaps none of the `params`
    (read, or for running stats written, while out is written). Returns (out, in_place)."""
    result = _out_buffer(value, x)
    _out_apart(value, params)
    return result


def _out_buffer(value: object, x: Array) -> tuple[Array | None, bool]:
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


def _out_apart(out: object, arrays: dict[str, object]) -> None:
    if out is None:
        return
    for name, arr in arrays.items():
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"out overlaps {name}; pass a separate buffer or a copy of "
                             f"{name}")


def axes(axis: object, ndim: int) -> tuple[int, ...]:
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


def ddof(value: object) -> float:
    """ddof: a real number, NumPy's meaning (count - ddof <= 0 gives inf or NaN, with
    NumPy's RuntimeWarning, at the division)."""
    return real_scalar(value, "ddof")
