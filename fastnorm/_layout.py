"""Memory layouts: which native layout an array is in, and its memory as the kernels see it.

Two layouts are native (API.md): C-contiguous, and channels-last, where the logical
(N, C, *spatial) array has C as its fastest-varying dim and the rest in C order (the strides
of ``x_nhwc.transpose(0, 3, 1, 2)`` and of PyTorch's channels_last / channels_last_3d
tensors). NumPy's contiguity flags ignore the strides of dims of size 1, so N=1, C=1 or
H*W=1 arrays are told apart correctly. Any other strides cost one private copy.
"""
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

Array = NDArray[Any]
Perm = tuple[int, ...]

C_ORDER = "C-contiguous"
CHANNELS_LAST = "channels-last"


# (cached: each call of an op on channels-last data asks several times)
@lru_cache(maxsize=None)
def channels_last_perm(ndim: int) -> Perm:
    """The axes of a logical (N, C, *spatial) array in memory order: (0, 2, ..., ndim-1, 1)."""
    return (0,) + tuple(range(2, ndim)) + (1,)


@lru_cache(maxsize=None)
def inverse(perm: Perm) -> Perm:
    return tuple(sorted(range(len(perm)), key=perm.__getitem__))


def of(x: Array) -> str | None:
    """C_ORDER, CHANNELS_LAST, or None for any other strides. C-contiguous wins where both
    hold (then they are the same memory order)."""
    if x.flags.c_contiguous:
        return C_ORDER
    if x.ndim >= 3 and x.transpose(channels_last_perm(x.ndim)).flags.c_contiguous:
        return CHANNELS_LAST
    return None


def perm_of(layout: str | None, ndim: int) -> Perm | None:
    """Axes of the logical array in memory order (None: already in order)."""
    return channels_last_perm(ndim) if layout == CHANNELS_LAST else None


def to_memory(a: Array, perm: Perm | None) -> Array:
    """The logical array `a` seen in memory order (a C-contiguous view for its layout)."""
    return a if perm is None else a.transpose(perm)


def to_logical(a: Array, perm: Perm | None) -> Array:
    """Inverse of to_memory."""
    return a if perm is None else a.transpose(inverse(perm))


def empty(shape: Sequence[int], dtype: DTypeLike, perm: Perm | None) -> Array:
    """A new logical array of `shape` whose memory is in the order `perm`."""
    if perm is None:
        logical: Array = np.empty(shape, dtype)
        return logical
    memory: Array = np.empty(tuple(shape[p] for p in perm), dtype)
    logical_view: Array = memory.transpose(inverse(perm))
    return logical_view


class Buffers:
    """The memory a plan's kernels read and write, in memory order (C-contiguous arrays of
    the kernel dtype): `src` holds x, `dst` receives the result; `perm` is the memory order
    of the logical array (None: C order), so plans pick the kernel shape for the layout.

    In place, the kernels work through `out` (x's memory, checked writable: x itself may be
    a read-only view of it). A private copy of x (other strides, float16, non-native byte
    order) keeps x's native layout if it has one (C order otherwise) and is normalized in
    place. native=False makes a channels-last x take the C-order copy (ops for which
    channels-last is not a native layout)."""

    def __init__(self, x: Array, out: Array | None, in_place: bool,
                 compute_dtype: np.dtype[Any], native: bool = True) -> None:
        self.x, self.out = x, out
        layout = of(x) if native else (C_ORDER if x.flags.c_contiguous else None)
        self.perm = perm_of(layout, x.ndim)
        if in_place and x.dtype == compute_dtype:
            assert out is not None               # in place: out is x's memory
            self.src = self.dst = to_memory(out, self.perm)
            self.into_out = True
        elif x.dtype == compute_dtype and layout is not None:
            self.src = to_memory(x, self.perm)
            self.into_out = out is not None and of(out) == layout
            self.dst = (to_memory(out, self.perm) if out is not None and self.into_out
                        else np.empty(self.src.shape, compute_dtype))
        else:
            self.src = self.dst = np.array(to_memory(x, self.perm), dtype=compute_dtype,
                                           order="C", copy=True)
            self.into_out = False

    def flat(self) -> tuple[Array, Array]:
        """(src, dst) flattened, for the kernels."""
        return self.src.reshape(-1), self.dst.reshape(-1)

    def finish(self) -> Array:
        """The array handed back: out (filled), or the result in x's layout and dtype (native
        byte order). float16 overflow stores inf, as in torch."""
        y = to_logical(self.dst, self.perm)
        if self.out is not None:
            if not self.into_out:
                with np.errstate(all="ignore"):
                    self.out[...] = y
            return self.out
        dtype = self.x.dtype if self.x.dtype.isnative else self.x.dtype.newbyteorder("=")
        if y.dtype == dtype:
            return y
        with np.errstate(all="ignore"):
            return y.astype(dtype, order="K")
