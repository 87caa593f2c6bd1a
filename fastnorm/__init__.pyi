# Type hints of fastnorm's public API (PEP 561; the package ships py.typed). The runtime
# functions live in _norms.py, _stats.py, _image.py and _info.py (taking tensors through
# _tensors.py); `python -m mypy.stubtest fastnorm` (tests/test_typing.py) checks that these
# signatures match them.
#
# Arrays in, arrays out: a float ndarray gives a result of its dtype; a CPU torch.Tensor
# gives tensors; other array-likes are accepted as NumPy converts them (a result dtype that
# only the runtime knows). Without torch installed, Tensor is unknown to the checker and the
# tensor signatures accept anything that is not an ndarray.
from collections.abc import Sequence
from typing import Any, Literal, SupportsIndex, TypedDict, TypeVar, overload

from typing_extensions import Self

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from torch import Tensor

__version__: str
__all__ = [
    "__version__", "batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
    "channel_layer_norm", "moments", "Moments", "normalize_image", "build_info",
]

_F = TypeVar("_F", bound=np.floating[Any])
_I = TypeVar("_I", bound=np.integer[Any])
_G = TypeVar("_G", bound=np.floating[Any])

# weight, bias, running statistics: cast to the compute dtype (running statistics that are
# updated in place must be writable float ndarrays)
_Param = ArrayLike | None
_Axis = SupportsIndex | Sequence[SupportsIndex]
_NormalizedShape = SupportsIndex | Sequence[SupportsIndex]
# the dtype= argument of moments: float16, float32 or float64
_FloatDType = type[_G] | np.dtype[_G]

# ---------------------------------------------------------------------------------------
# normalizations

@overload
def batch_norm(x: NDArray[_F], running_mean: _Param = None, running_var: _Param = None,
               weight: _Param = None, bias: _Param = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *, out: NDArray[_F] | None = None,
               num_threads: int | None = None) -> NDArray[_F]: ...
@overload
def batch_norm(x: Tensor, running_mean: _Param = None, running_var: _Param = None,
               weight: _Param = None, bias: _Param = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *, out: Tensor | None = None,
               num_threads: int | None = None) -> Tensor: ...
@overload
def batch_norm(x: ArrayLike, running_mean: _Param = None, running_var: _Param = None,
               weight: _Param = None, bias: _Param = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *, out: NDArray[Any] | None = None,
               num_threads: int | None = None) -> NDArray[Any]: ...

@overload
def instance_norm(x: NDArray[_F], running_mean: _Param = None, running_var: _Param = None,
                  weight: _Param = None, bias: _Param = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5, *,
                  out: NDArray[_F] | None = None,
                  num_threads: int | None = None) -> NDArray[_F]: ...
@overload
def instance_norm(x: Tensor, running_mean: _Param = None, running_var: _Param = None,
                  weight: _Param = None, bias: _Param = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5, *, out: Tensor | None = None,
                  num_threads: int | None = None) -> Tensor: ...
@overload
def instance_norm(x: ArrayLike, running_mean: _Param = None, running_var: _Param = None,
                  weight: _Param = None, bias: _Param = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5, *,
                  out: NDArray[Any] | None = None,
                  num_threads: int | None = None) -> NDArray[Any]: ...

# group_norm and layer_norm: y, or (y, mean, rstd) with return_stats=True
@overload
def group_norm(x: NDArray[_F], num_groups: SupportsIndex, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[_F] | None = None,
               return_stats: Literal[False] = False,
               num_threads: int | None = None) -> NDArray[_F]: ...
@overload
def group_norm(x: NDArray[_F], num_groups: SupportsIndex, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[_F] | None = None,
               return_stats: Literal[True],
               num_threads: int | None = None
               ) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]: ...
@overload
def group_norm(x: Tensor, num_groups: SupportsIndex, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: Tensor | None = None,
               return_stats: Literal[False] = False,
               num_threads: int | None = None) -> Tensor: ...
@overload
def group_norm(x: Tensor, num_groups: SupportsIndex, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: Tensor | None = None,
               return_stats: Literal[True],
               num_threads: int | None = None) -> tuple[Tensor, Tensor, Tensor]: ...
@overload
def group_norm(x: ArrayLike, num_groups: SupportsIndex, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[Any] | None = None,
               return_stats: Literal[False] = False,
               num_threads: int | None = None) -> NDArray[Any]: ...
@overload
def group_norm(x: ArrayLike, num_groups: SupportsIndex, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[Any] | None = None,
               return_stats: bool, num_threads: int | None = None
               ) -> NDArray[Any] | tuple[NDArray[Any], NDArray[Any], NDArray[Any]]: ...

@overload
def layer_norm(x: NDArray[_F], normalized_shape: _NormalizedShape, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[_F] | None = None,
               return_stats: Literal[False] = False,
               num_threads: int | None = None) -> NDArray[_F]: ...
@overload
def layer_norm(x: NDArray[_F], normalized_shape: _NormalizedShape, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[_F] | None = None,
               return_stats: Literal[True],
               num_threads: int | None = None
               ) -> tuple[NDArray[_F], NDArray[_F], NDArray[_F]]: ...
@overload
def layer_norm(x: Tensor, normalized_shape: _NormalizedShape, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: Tensor | None = None,
               return_stats: Literal[False] = False,
               num_threads: int | None = None) -> Tensor: ...
@overload
def layer_norm(x: Tensor, normalized_shape: _NormalizedShape, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: Tensor | None = None,
               return_stats: Literal[True],
               num_threads: int | None = None) -> tuple[Tensor, Tensor, Tensor]: ...
@overload
def layer_norm(x: ArrayLike, normalized_shape: _NormalizedShape, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[Any] | None = None,
               return_stats: Literal[False] = False,
               num_threads: int | None = None) -> NDArray[Any]: ...
@overload
def layer_norm(x: ArrayLike, normalized_shape: _NormalizedShape, weight: _Param = None,
               bias: _Param = None, eps: float = 1e-5, *, out: NDArray[Any] | None = None,
               return_stats: bool, num_threads: int | None = None
               ) -> NDArray[Any] | tuple[NDArray[Any], NDArray[Any], NDArray[Any]]: ...

@overload
def rms_norm(x: NDArray[_F], normalized_shape: _NormalizedShape, weight: _Param = None,
             eps: float | None = None, *, out: NDArray[_F] | None = None,
             num_threads: int | None = None) -> NDArray[_F]: ...
@overload
def rms_norm(x: Tensor, normalized_shape: _NormalizedShape, weight: _Param = None,
             eps: float | None = None, *, out: Tensor | None = None,
             num_threads: int | None = None) -> Tensor: ...
@overload
def rms_norm(x: ArrayLike, normalized_shape: _NormalizedShape, weight: _Param = None,
             eps: float | None = None, *, out: NDArray[Any] | None = None,
             num_threads: int | None = None) -> NDArray[Any]: ...

@overload
def channel_layer_norm(x: NDArray[_F], weight: _Param = None, bias: _Param = None,
                       eps: float = 1e-6, *, out: NDArray[_F] | None = None,
                       num_threads: int | None = None) -> NDArray[_F]: ...
@overload
def channel_layer_norm(x: Tensor, weight: _Param = None, bias: _Param = None,
                       eps: float = 1e-6, *, out: Tensor | None = None,
                       num_threads: int | None = None) -> Tensor: ...
@overload
def channel_layer_norm(x: ArrayLike, weight: _Param = None, bias: _Param = None,
                       eps: float = 1e-6, *, out: NDArray[Any] | None = None,
                       num_threads: int | None = None) -> NDArray[Any]: ...

# ---------------------------------------------------------------------------------------
# statistics: like np.mean / np.var, a reduction over all axes (keepdims=False) gives NumPy
# scalars, any other one arrays (tensors: 0-d ones); integer data gives float64 by default

@overload
def moments(x: NDArray[_F], axis: None = None, *, ddof: float = 0,
            keepdims: Literal[False] = False, dtype: None = None,
            num_threads: int | None = None) -> tuple[_F, _F]: ...
@overload
def moments(x: NDArray[_I], axis: None = None, *, ddof: float = 0,
            keepdims: Literal[False] = False, dtype: None = None,
            num_threads: int | None = None) -> tuple[np.float64, np.float64]: ...
@overload
def moments(x: NDArray[Any], axis: None = None, *, ddof: float = 0,
            keepdims: Literal[False] = False, dtype: _FloatDType[_G],
            num_threads: int | None = None) -> tuple[_G, _G]: ...
@overload
def moments(x: NDArray[_F], axis: _Axis | None = None, *, ddof: float = 0,
            keepdims: bool = False, dtype: None = None,
            num_threads: int | None = None) -> tuple[NDArray[_F], NDArray[_F]]: ...
@overload
def moments(x: NDArray[_I], axis: _Axis | None = None, *, ddof: float = 0,
            keepdims: bool = False, dtype: None = None,
            num_threads: int | None = None
            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
@overload
def moments(x: NDArray[Any], axis: _Axis | None = None, *, ddof: float = 0,
            keepdims: bool = False, dtype: _FloatDType[_G],
            num_threads: int | None = None) -> tuple[NDArray[_G], NDArray[_G]]: ...
@overload
def moments(x: Tensor, axis: _Axis | None = None, *, ddof: float = 0,
            keepdims: bool = False, dtype: DTypeLike | None = None,
            num_threads: int | None = None) -> tuple[Tensor, Tensor]: ...
@overload
def moments(x: ArrayLike, axis: _Axis | None = None, *, ddof: float = 0,
            keepdims: bool = False, dtype: Any = None,
            num_threads: int | None = None) -> tuple[Any, Any]: ...

class Moments:
    # statistics over `axis`; mean, var and std are float64: NumPy scalars for axis=None,
    # arrays shaped like the non-reduced dims otherwise
    def __init__(self, axis: _Axis | None = None) -> None: ...
    @property
    def axis(self) -> int | tuple[int, ...] | None: ...
    @property
    def count(self) -> int: ...
    @property
    def mean(self) -> NDArray[np.float64] | np.float64: ...
    def update(self, batch: ArrayLike, *, num_threads: int | None = None) -> Self: ...
    def merge(self, other: Moments) -> Self: ...
    def __add__(self, other: Moments) -> Moments: ...
    def copy(self) -> Moments: ...
    def var(self, ddof: float = 0) -> NDArray[np.float64] | np.float64: ...
    def std(self, ddof: float = 0) -> NDArray[np.float64] | np.float64: ...
    def __getstate__(self) -> tuple[Any, ...]: ...
    def __setstate__(self, state: tuple[Any, ...]) -> None: ...
    def __dask_tokenize__(self) -> tuple[str, int, str, str]: ...

# ---------------------------------------------------------------------------------------
# images

_ImageMode = Literal["standard", "image", "image_per_channel", "min_max",
                     "min_max_per_channel"]
_ChannelValues = float | Sequence[float] | None
_Arrays = NDArray[Any] | Sequence[NDArray[Any]]
_Images = ArrayLike | Sequence[ArrayLike]

@overload
def normalize_image(images: _Arrays, mean: _ChannelValues = None, std: _ChannelValues = None,
                    *, mode: _ImageMode = "standard", scale: float | None = None,
                    swap_rb: bool = False, layout: Literal["NCHW", "NHWC"] = "NCHW",
                    dtype: type[np.float32] = ..., eps: float = 1e-4,
                    out: NDArray[np.float32] | None = None,
                    num_threads: int | None = None) -> NDArray[np.float32]: ...
@overload
def normalize_image(images: _Arrays, mean: _ChannelValues = None, std: _ChannelValues = None,
                    *, mode: _ImageMode = "standard", scale: float | None = None,
                    swap_rb: bool = False, layout: Literal["NCHW", "NHWC"] = "NCHW",
                    dtype: _FloatDType[_G], eps: float = 1e-4, out: NDArray[_G] | None = None,
                    num_threads: int | None = None) -> NDArray[_G]: ...
@overload
def normalize_image(images: Tensor | Sequence[Tensor], mean: _ChannelValues = None,
                    std: _ChannelValues = None, *, mode: _ImageMode = "standard",
                    scale: float | None = None, swap_rb: bool = False,
                    layout: Literal["NCHW", "NHWC"] = "NCHW", dtype: DTypeLike = ...,
                    eps: float = 1e-4, out: Tensor | None = None,
                    num_threads: int | None = None) -> Tensor: ...
@overload
def normalize_image(images: _Images, mean: _ChannelValues = None, std: _ChannelValues = None,
                    *, mode: _ImageMode = "standard", scale: float | None = None,
                    swap_rb: bool = False, layout: Literal["NCHW", "NHWC"] = "NCHW",
                    dtype: DTypeLike, eps: float = 1e-4, out: NDArray[Any] | None = None,
                    num_threads: int | None = None) -> NDArray[Any]: ...

# ---------------------------------------------------------------------------------------
# build information

class _BuildInfo(TypedDict):
    version: str
    python: str
    machine: str
    openmp: bool
    openmp_version: int
    max_threads: int
    forked_child_serial: bool
    cpu_x86_64_level: int
    kernel_variant: str
    available_variants: list[str]
    caches: dict[str, Any]
    cache_tuning: dict[str, int]

def build_info() -> _BuildInfo: ...
