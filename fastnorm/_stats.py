"""Statistics: `moments` and the streaming, mergeable `Moments` accumulator.

Both reduce to `raw_moments`, which maps an axis choice onto the two statistics kernels
(groups of contiguous segments; strided columns) and returns (count, mean, M2) in float64.
"""
import math

import numpy as np

from . import _dispatch, _threads
from . import _validate as V
from ._shapes import ColumnShape, SegmentShape


def _blocks(shape, axes):
    """Merge the dims of a C-contiguous shape into alternating kept/reduced blocks:
    a list of (size, reduced). Size-1 dims are dropped (they belong to either side)."""
    blocks = []
    for d, size in enumerate(shape):
        if size == 1:
            continue
        reduced = d in axes
        if blocks and blocks[-1][1] == reduced:
            blocks[-1] = (blocks[-1][0] * size, reduced)
        else:
            blocks.append((size, reduced))
    return blocks


def raw_moments(x, axes, num_threads):
    """(count, mean, m2) of x over `axes` (a sorted tuple): float64 arrays shaped like the
    kept dims of x, in order. x: a validated float array with at least one element."""
    kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
    count = math.prod(x.shape[d] for d in axes)
    x = np.ascontiguousarray(x, dtype=V.compute_dtype(x.dtype))
    blocks = _blocks(x.shape, axes)
    if not any(reduced for _, reduced in blocks):          # nothing to reduce
        return count, x.astype(np.float64).reshape(kept_shape), np.zeros(kept_shape)
    pattern = "".join("R" if reduced else "K" for _, reduced in blocks)
    if pattern not in ("R", "KR", "RK", "KRK", "RKR"):
        # layouts with more alternations: move the reduced axes last (a copy) -> "KR"
        x = np.ascontiguousarray(np.moveaxis(x, axes, range(-len(axes), 0)))
        blocks, pattern = [(math.prod(kept_shape), False), (count, True)], "KR"
    sizes = [s for s, _ in blocks]
    kept = math.prod(kept_shape)
    mean = np.empty(kept)
    m2 = np.empty(kept)
    flat = x.reshape(-1)
    kernels = _dispatch.kernels()
    if pattern in ("R", "KR"):           # contiguous rows
        groups = sizes[0] if pattern == "KR" else 1
        kernels.segment_moments(flat, SegmentShape(groups, 1, count, count, 0), mean, m2,
                                num_threads)
    elif pattern == "RKR":               # BatchNorm layout: N segments of each channel
        nseg, groups, seg_len = sizes
        kernels.segment_moments(flat, SegmentShape(groups, nseg, seg_len, seg_len,
                                                   groups * seg_len), mean, m2, num_threads)
    else:                                # "RK" or "KRK": columns of a (outer, rows, cols)
        kernels.column_moments(flat, ColumnShape(*(sizes if pattern == "KRK" else [1] + sizes)),
                               mean, m2, num_threads)
    return count, mean.reshape(kept_shape), m2.reshape(kept_shape)


def moments(x, axis=None, *, ddof=0, keepdims=False, dtype=None, num_threads=None):
    """Mean and variance of x over `axis`, like ``(np.mean(x, axis), np.var(x, axis, ddof))``.

    Computed by chunked shifted sums merged with Chan's formula in float64, so ill-conditioned
    data (large mean, small spread) keeps its digits. Results are in `dtype` (default: the
    dtype of x; pass np.float64 to keep the accumulator's precision) and bit-identical for
    every thread count.
    """
    x = V.array_input(x)
    axes = V.axes(axis, x.ndim)
    count = math.prod(x.shape[d] for d in axes)
    ddof = V.ddof(ddof, count)
    out_dtype = V.result_dtype(dtype, x.dtype)
    nt = _threads.resolve(V.num_threads(num_threads))
    kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
    if x.size == 0:                      # count > 0 here, so some kept dim is empty
        mean = np.empty(kept_shape)
        var = np.empty(kept_shape)
    else:
        _, mean, m2 = raw_moments(x, axes, nt)
        var = m2 / (count - ddof)
    if keepdims:
        full = tuple(1 if d in axes else s for d, s in enumerate(x.shape))
        mean, var = mean.reshape(full), var.reshape(full)
    return mean.astype(out_dtype), var.astype(out_dtype)


class Moments:
    """Streaming, mergeable statistics over `axis`.

    ``acc.update(batch)`` adds a batch; ``acc.merge(other)`` or ``acc + other`` combine
    accumulators exactly as if one had seen all the batches (Chan's merge in float64).
    Batches must agree on the dimensions that are not reduced. Picklable.
    """

    def __init__(self, axis=None):
        if axis is not None:
            V.axes(axis, 64)             # type check now; range is checked per batch
        self._axis = tuple(axis) if isinstance(axis, (tuple, list)) else axis
        self._axes = None                # normalized axes, once a batch fixes the rank
        self._ndim = None
        self._count = 0
        self._mean = None
        self._m2 = None

    @property
    def axis(self):
        return self._axis

    def update(self, batch, *, num_threads=None):
        """Add the statistics of `batch`; returns self."""
        x = V.array_input(batch, "batch")
        axes = V.axes(self._axis, x.ndim)
        nt = _threads.resolve(V.num_threads(num_threads))
        kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
        if self._axis is not None and self._ndim is not None and x.ndim != self._ndim:
            raise ValueError(f"batch has {x.ndim} dimensions, earlier batches had "
                             f"{self._ndim}")
        if self._mean is not None and kept_shape != self._mean.shape:
            raise ValueError(f"batch has non-reduced dimensions {kept_shape}, earlier "
                             f"batches had {self._mean.shape}")
        if self._axis is not None:
            self._ndim, self._axes = x.ndim, axes
        if x.size == 0:
            if self._mean is None:
                self._mean, self._m2 = np.zeros(kept_shape), np.zeros(kept_shape)
            return self
        self._merge_raw(*raw_moments(x, axes, nt))
        return self

    def _merge_raw(self, count, mean, m2):
        if count == 0:
            return
        if self._count == 0:
            self._count, self._mean, self._m2 = count, mean.copy(), m2.copy()
            return
        n = self._count + count
        delta = mean - self._mean
        self._mean = self._mean + delta * (count / n)
        self._m2 = self._m2 + m2 + delta * delta * (self._count / n) * count
        self._count = n

    def merge(self, other):
        """Merge the statistics of another accumulator over the same axis; returns self."""
        if not isinstance(other, Moments):
            raise TypeError(f"can only merge a Moments, got {type(other).__name__}")
        same_axis = (self._axes == other._axes if self._axes is not None
                     and other._axes is not None else self._axis == other._axis)
        if not same_axis:
            raise ValueError(f"cannot merge Moments over axis {other._axis!r} into Moments "
                             f"over axis {self._axis!r}")
        if (self._mean is not None and other._mean is not None
                and self._mean.shape != other._mean.shape):
            raise ValueError(f"cannot merge Moments with non-reduced shape "
                             f"{other._mean.shape} into one with {self._mean.shape}")
        if self._mean is None and other._mean is not None:
            self._mean, self._m2 = np.zeros(other._mean.shape), np.zeros(other._mean.shape)
        if self._axes is None:
            self._ndim, self._axes = other._ndim, other._axes
        self._merge_raw(other._count, other._mean, other._m2)
        return self

    def __add__(self, other):
        if not isinstance(other, Moments):
            return NotImplemented
        return self.copy().merge(other)

    def copy(self):
        new = Moments.__new__(Moments)
        new.__dict__.update(self.__dict__)
        for name in ("_mean", "_m2"):
            if getattr(self, name) is not None:
                setattr(new, name, getattr(self, name).copy())
        return new

    def _require_data(self):
        if self._count == 0:
            raise ValueError("Moments has seen no data yet")

    @property
    def count(self):
        """Number of values reduced into each statistic."""
        return self._count

    @property
    def mean(self):
        """Mean over the reduced axes (float64 array)."""
        self._require_data()
        return self._mean.copy()

    def var(self, ddof=0):
        """Variance with NumPy's meaning of ddof (float64 array)."""
        self._require_data()
        ddof = V.ddof(ddof, self._count)
        return self._m2 / (self._count - ddof)

    def std(self, ddof=0):
        """Standard deviation with NumPy's meaning of ddof (float64 array)."""
        return np.sqrt(self.var(ddof))

    def __repr__(self):
        shape = None if self._mean is None else self._mean.shape
        return f"Moments(axis={self._axis!r}, count={self._count}, shape={shape})"
