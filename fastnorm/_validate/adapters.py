"""The checks of the arguments the adapters (fastnorm.dask, fastnorm.torch) hand in: their
array types come from the adapter, so nothing here imports dask or torch."""

import numbers
from typing import Any, cast

import numpy as np

from .core import is_float


# ---------------------------------------------------------------------------------------
# fastnorm.dask (the adapter hands in dask's Array type: nothing here imports dask)

def dask_array(x: Any, array_type: type[Any], integers: bool, min_ndim: int = 0,
               name: str = "x") -> Any:
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


def split_every(value: object) -> int | dict[int, int] | None:
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
    return cast("int | dict[int, int]", value)


# ---------------------------------------------------------------------------------------
# fastnorm.torch (the adapter hands in the tensor and torch's types: nothing here imports torch)

def tensor(value: Any, name: str, grad_enabled: bool, numpy_dtypes: dict[Any, np.dtype[Any]],
           strided: object) -> np.dtype[Any]:
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
