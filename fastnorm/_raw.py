"""The statistics engine under `moments`, `Moments`, the normalizations that need separate
statistics and fastnorm.dask: `raw_moments` maps an axis choice onto the two statistics
kernels (groups of contiguous segments; strided columns) and returns float64 statistics
with the mean as a pair shift + dev (`Raw`); `merge_raw` is Chan's merge of two of them.
Integer data (uint8 ... int64) takes the integer kernel instead: exact sums of x and x*x,
from which the mean and M2 are rounded once (`_raw_from_sums`).
"""
import math
from fractions import Fraction
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import _dispatch
from . import _layout as L
from . import _validate as V
from ._shapes import ColumnShape, SegmentShape

F64 = NDArray[np.float64]
Blocks = list[tuple[int, bool]]


def _blocks(shape: Sequence[int], axes: Sequence[int]) -> Blocks:
    """Merge the dims of a C-contiguous shape into alternating kept/reduced blocks:
    a list of (size, reduced). Size-1 dims are dropped (they belong to either side)."""
    blocks: Blocks = []
    for d, size in enumerate(shape):
        if size == 1:
            continue
        reduced = d in axes
        if blocks and blocks[-1][1] == reduced:
            blocks[-1] = (blocks[-1][0] * size, reduced)
        else:
            blocks.append((size, reduced))
    return blocks


class Raw(NamedTuple):
    """Statistics over the reduced axes, float64 arrays shaped like the kept dims. The mean
    is shift + dev: shift is a value of the data near the mean and dev the mean's small
    deviation from it, so merging statistics of data far from zero (1e9 with unit spread)
    keeps the digits that subtracting two rounded means would lose."""
    count: int  # type: ignore[assignment]  # the field shadows tuple.count on purpose
    shift: F64
    dev: F64
    m2: F64

    @property
    def mean(self) -> F64:
        return self.shift + self.dev


def merge_raw(a: Raw, b: Raw) -> Raw:
    """Chan's merge of the Raw statistics b into a (a new Raw), on deviations from a's shift
    as the kernels merge chunks."""
    if b.count == 0:
        return a
    if a.count == 0:
        return b
    n = a.count + b.count
    with np.errstate(invalid="ignore", over="ignore"):
        b_dev = (b.shift - a.shift) + b.dev
        delta = b_dev - a.dev
        # infinite data: the weighted mean gives NumPy's inf, -inf or NaN
        dev = np.where(np.isfinite(delta), a.dev + delta * (b.count / n),
                       a.dev * (a.count / n) + b_dev * (b.count / n))
        m2 = a.m2 + b.m2 + delta * delta * (a.count / n) * b.count
    return Raw(n, a.shift, dev, m2)


def raw_moments(x: NDArray[Any], axes: tuple[int, ...], num_threads: int,
                precise: bool = True) -> Raw:
    """Raw statistics of x over `axes` (a sorted tuple). x: a validated float array with
    at least one element; a channels-last x is read in its memory order (no copy).
    precise=False: statistics only a normalization of float32 data uses (float32 lanes
    where safe, in the column kernel)."""
    perm = L.perm_of(L.of(x), x.ndim)
    if perm is not None:
        kept_memory_order = [p for p in perm if p not in axes]
        raw = raw_moments(x.transpose(perm), tuple(sorted(perm.index(a) for a in axes)),
                          num_threads, precise)
        order = [int(i) for i in np.argsort(kept_memory_order)]      # back to logical order
        return Raw(raw.count, *(np.array(a.transpose(order), order="C") for a in raw[1:]))
    kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
    count = math.prod(x.shape[d] for d in axes)
    x = np.ascontiguousarray(x, dtype=V.compute_dtype(x.dtype))
    blocks = _blocks(x.shape, axes)
    if V.is_integer(x.dtype):
        return _integer_raw_moments(x, axes, blocks, kept_shape, count, num_threads)
    if not any(reduced for _, reduced in blocks):          # nothing to reduce
        zeros = np.zeros(kept_shape)
        return Raw(count, x.astype(np.float64).reshape(kept_shape), zeros, zeros.copy())
    pattern = "".join("R" if reduced else "K" for _, reduced in blocks)
    if pattern not in ("R", "KR", "RK", "KRK", "RKR"):
        # layouts with more alternations: move the reduced axes last (a copy) -> "KR"
        x = np.ascontiguousarray(np.moveaxis(x, axes, range(-len(axes), 0)))
        blocks, pattern = [(math.prod(kept_shape), False), (count, True)], "KR"
    sizes = [s for s, _ in blocks]
    kept = math.prod(kept_shape)
    shift, dev, m2 = np.empty(kept), np.empty(kept), np.empty(kept)
    flat = x.reshape(-1)
    kernels = _dispatch.kernels()
    if pattern in ("R", "KR"):           # contiguous rows
        groups = sizes[0] if pattern == "KR" else 1
        kernels.segment_moments(flat, SegmentShape(groups, 1, count, count, 0), shift, dev,
                                m2, num_threads)
    elif pattern == "RKR":               # BatchNorm layout: N segments of each channel
        nseg, groups, seg_len = sizes
        kernels.segment_moments(flat, SegmentShape(groups, nseg, seg_len, seg_len,
                                                   groups * seg_len), shift, dev, m2,
                                num_threads)
    else:                                # "RK" or "KRK": columns of a (outer, rows, cols)
        kernels.column_moments(flat, ColumnShape(*(sizes if pattern == "KRK" else [1] + sizes)),
                               shift, dev, m2, num_threads, precise)
    return Raw(count, shift.reshape(kept_shape), dev.reshape(kept_shape),
               m2.reshape(kept_shape))


def _integer_raw_moments(x: NDArray[Any], axes: tuple[int, ...], blocks: Blocks,
                         kept_shape: tuple[int, ...], count: int, num_threads: int) -> Raw:
    """raw_moments of C-contiguous integer x: the blocks as one (rep, outer, rows, cols)
    record of the integer kernel (_kernels/stats_int.pxi), exact sums, then Raw."""
    kept = math.prod(kept_shape)
    pattern = "".join("R" if reduced else "K" for _, reduced in blocks)
    sizes = [s for s, _ in blocks]
    if "R" not in pattern:                   # nothing to reduce: each value its own group
        record: tuple[int, ...] = (1, kept, 1, 1)
    elif pattern in ("R", "KR"):
        record = (1, sizes[0] if pattern == "KR" else 1, count, 1)
    elif pattern in ("RK", "KRK"):
        record = (1, *(sizes if pattern == "KRK" else [1] + sizes))
    elif pattern == "RKR":
        record = (sizes[0], sizes[1], sizes[2], 1)
    else:                                    # more alternations: reduced axes last (a copy)
        x = np.ascontiguousarray(np.moveaxis(x, axes, range(-len(axes), 0)))
        record = (1, kept, count, 1)
    sums = np.empty((kept, 5), np.uint64)
    _dispatch.kernels().integer_moments(x.reshape(-1), *record, sums, num_threads)
    shift, dev, m2 = _raw_from_sums(sums, count)
    return Raw(count, shift.reshape(kept_shape), dev.reshape(kept_shape),
               m2.reshape(kept_shape))


_EXACT_FLOAT = 2 ** 53          # integers up to this are exact in float64


def _raw_from_sums(sums: NDArray[np.uint64], n: int) -> tuple[F64, F64, F64]:
    """(shift, dev, m2) float64 arrays from exact sums (G, 5) uint64 words (s1 as a 128-bit
    two's complement integer, s2 as a 192-bit one, low words first) of n values each: the
    mean rounded once (shift, dev its remainder) and M2 = (n*s2 - s1**2) / n rounded once.
    Vectorized while every quantity is exact in int64/float64, Python integers otherwise."""
    s1_lo, s1_hi, w0, w1, w2 = (sums[:, k] for k in range(5))
    s1 = s1_lo.view(np.int64)
    fits = (np.all(s1_hi == np.where(s1 < 0, np.uint64(2 ** 64 - 1), np.uint64(0)))
            and not np.any(w1) and not np.any(w2))
    if fits and sums.shape[0] and n < _EXACT_FLOAT:
        s1_max = int(np.max(np.abs(s1.astype(np.float64))))
        if s1_max < _EXACT_FLOAT and n * int(np.max(w0)) < 2 ** 63:
            m2n = n * w0.astype(np.int64) - s1 * s1      # n * M2, exact
            if int(np.max(m2n)) <= _EXACT_FLOAT:
                return (s1.astype(np.float64) / n, np.zeros(len(s1)),
                        m2n.astype(np.float64) / n)
    shift, dev, m2 = (np.empty(sums.shape[0]) for _ in range(3))
    for g, words in enumerate(sums.tolist()):
        total = words[0] | (words[1] << 64)
        if total >= 2 ** 127:
            total -= 2 ** 128
        squares = words[2] | (words[3] << 64) | (words[4] << 128)
        shift[g] = total / n                              # correctly rounded
        dev[g] = float(Fraction(total, n) - Fraction(shift[g]))
        m2[g] = (n * squares - total * total) / n
    return shift, dev, m2
