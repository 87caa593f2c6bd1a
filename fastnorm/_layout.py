"""Memory layouts: which native layout an array is in, and its memory as the kernels see it.

Two layouts are native (API.md): C-contiguous, and channels-last, where the logical
(N, C, *spatial) array has C as its fastest-varying dim and the rest in C order (the strides
of ``x_nhwc.transpose(0, 3, 1, 2)`` and of PyTorch's channels_last / channels_last_3d
tensors). NumPy's contiguity flags ignore the strides of dims of size 1, so N=1, C=1 or
H*W=1 arrays are told apart correctly. Any other strides cost one private copy.
"""
import numpy as np

C_ORDER = "C-contiguous"
CHANNELS_LAST = "channels-last"


def channels_last_perm(ndim):
    """The axes of a logical (N, C, *spatial) array in memory order: (0, 2, ..., ndim-1, 1)."""
    return (0,) + tuple(range(2, ndim)) + (1,)


def inverse(perm):
    return tuple(int(i) for i in np.argsort(perm))


def of(x):
    """C_ORDER, CHANNELS_LAST, or None for any other strides. C-contiguous wins where both
    hold (then they are the same memory order)."""
    if x.flags.c_contiguous:
        return C_ORDER
    if x.ndim >= 3 and x.transpose(channels_last_perm(x.ndim)).flags.c_contiguous:
        return CHANNELS_LAST
    return None


def perm_of(layout, ndim):
    """Axes of the logical array in memory order (None: already in order)."""
    return channels_last_perm(ndim) if layout == CHANNELS_LAST else None


def to_memory(a, perm):
    """The logical array `a` seen in memory order (a C-contiguous view for its layout)."""
    return a if perm is None else a.transpose(perm)


def to_logical(a, perm):
    """Inverse of to_memory."""
    return a if perm is None else a.transpose(inverse(perm))


def empty(shape, dtype, perm):
    """A new logical array of `shape` whose memory is in the order `perm`."""
    if perm is None:
        return np.empty(shape, dtype)
    return np.empty(tuple(shape[p] for p in perm), dtype).transpose(inverse(perm))
