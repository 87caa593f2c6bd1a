"""Statistics: `moments` and the streaming, mergeable `Moments` accumulator.

Both reduce to the statistics engine of fastnorm._raw (`raw_moments`: float64 statistics
with the mean as shift + dev, exact sums for integer data) and merge with its `merge_raw`.
"""
import hashlib
import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _threads
from . import _validate as V
from ._docs import fill
from ._raw import F64, Raw, merge_raw, raw_moments

Axis = int | tuple[int, ...] | list[int] | None


def _variance(m2: F64, count: int, ddof: float) -> F64:
    """m2 / (count - ddof) as np.var computes it: a count - ddof <= 0 warns as NumPy does and
    gives inf or NaN."""
    denominator = max(count - ddof, 0)
    if denominator <= 0:
        warnings.warn("Degrees of freedom <= 0 for slice", RuntimeWarning, stacklevel=3)
    result: F64 = np.true_divide(m2, denominator)
    return result


@fill
def moments(x: object, axis: Axis = None, *, ddof: float = 0, keepdims: bool = False,
            dtype: DTypeLike | None = None, num_threads: int | None = None
            ) -> tuple[NDArray[Any], NDArray[Any]]:
    """Mean and variance of x over `axis`, like ``(np.mean(x, axis), np.var(x, axis, ddof))``.

    Computed by chunked shifted sums merged with Chan's formula in float64, so ill-conditioned
    data (large mean, small spread) keeps its digits. Results are in `dtype` (default: the
    dtype of x; pass np.float64 to keep the accumulator's precision) and bit-identical for
    every thread count. Empty reductions and ``count - ddof <= 0`` give NaN/inf with NumPy's
    RuntimeWarnings.

    Integer x (uint8, int8, uint16, int16, uint32, int32, int64) is accumulated exactly
    (integer sums of x and x*x): the mean and the sum of squared deviations are the exact
    values rounded once to float64; results are float64 unless `dtype` says otherwise.

    Parameters
    ----------
    x : array_like
        float16, float32 or float64 data, or integers (not bool).
    axis : None, int or tuple of int
        The dims reduced (None: all; negatives count from the end).
    ddof : float
        Delta degrees of freedom of the variance, as in ``np.var``.
    keepdims : bool
        Keep the reduced dims with size 1.
    dtype : dtype, optional
        float16, float32 or float64 results (default: the dtype of x; float64 for integers).
    {num_threads}

    Returns
    -------
    mean, var : ndarray or NumPy scalar
        Shaped like the kept dims (scalars for a reduction over all dims, as np.mean).

    {examples}
    >>> x = np.array([[1., 2., 3.], [4., 5., 6.]], dtype=np.float32)
    >>> mean, var = fn.moments(x)
    >>> print(float(mean), round(float(var), 4))
    3.5 2.9167
    >>> mean, var = fn.moments(x, axis=0)
    >>> print(mean, var)
    [2.5 3.5 4.5] [2.25 2.25 2.25]
    >>> mean, var = fn.moments(x, axis=1, ddof=1, keepdims=True)
    >>> print(mean.shape, var.ravel())
    (2, 1) [1. 1.]

    Data far from zero keeps its digits (here in float64 results):

    >>> mean, var = fn.moments(np.float32(1e4) + np.arange(4, dtype=np.float32),
    ...                        dtype=np.float64)
    >>> print(float(mean), float(var))
    10001.5 1.25
    """
    x = V.stats_input(x)
    axes = V.axes(axis, x.ndim)
    count = math.prod(x.shape[d] for d in axes)
    ddof = V.ddof(ddof)
    out_dtype = V.result_dtype(dtype, np.float64 if V.is_integer(x.dtype) else x.dtype)
    nt = _threads.resolve(V.num_threads(num_threads))
    kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
    if x.size == 0:
        mean = np.full(kept_shape, np.nan)
        if count == 0 and mean.size:
            warnings.warn("Mean of empty slice", RuntimeWarning, stacklevel=2)
        # NumPy: the sum of squares of no values is 0 (0 / max(0 - ddof, 0) is NaN)
        var = _variance(np.zeros(kept_shape) if count == 0 else np.full(kept_shape, np.nan),
                        count, ddof)
    else:
        raw = raw_moments(x, axes, nt)
        mean, var = raw.mean, _variance(raw.m2, count, ddof)
    if keepdims:
        full = tuple(1 if d in axes else s for d, s in enumerate(x.shape))
        mean, var = mean.reshape(full), var.reshape(full)
    return mean.astype(out_dtype), var.astype(out_dtype)


@fill
class Moments:
    """Streaming, mergeable statistics over `axis`.

    ``acc.update(batch)`` adds a batch; ``acc.merge(other)`` or ``acc + other`` combine
    accumulators exactly as if one had seen all the batches (Chan's merge in float64, on
    deviations from a shift, as the kernels merge chunks). Batches must agree on the
    dimensions that are not reduced. An accumulator that has seen no data merges as a
    no-op. Pickles as plain NumPy state and tokenizes deterministically for dask.

    Parameters
    ----------
    axis : None, int or tuple of int
        The dims of each batch that are reduced (None: all).

    {examples}
    >>> acc = fn.Moments(axis=0)
    >>> acc = acc.update(np.array([[1., 10.], [3., 30.]])).update(np.array([[5., 50.]]))
    >>> print(acc.count, acc.mean, acc.var())
    3 [ 3. 30.] [  2.66666667 266.66666667]
    >>> other = fn.Moments(axis=0).update(np.array([[7., 70.]]))
    >>> total = acc + other
    >>> print(total.count, total.mean, total.std(ddof=1).round(3))
    4 [ 4. 40.] [ 2.582 25.82 ]
    """

    def __init__(self, axis: Axis = None) -> None:
        if axis is not None:
            V.axes(axis, 64)             # type check now; range is checked per batch
        self._axis = tuple(axis) if isinstance(axis, (tuple, list)) else axis
        self._axes: tuple[int, ...] | None = None   # normalized, once a batch fixes the rank
        self._ndim: int | None = None
        self._count = 0
        self._shift: F64 | None = None   # the mean is _shift + _dev (see Raw)
        self._dev: F64 | None = None
        self._m2: F64 | None = None

    @property
    def axis(self) -> int | tuple[int, ...] | None:
        return self._axis

    @fill
    def update(self, batch: object, *, num_threads: int | None = None) -> "Moments":
        """Add the statistics of `batch`; returns self.

        Parameters
        ----------
        batch : array_like
            Float or integer data (as in moments); its non-reduced dims match earlier
            batches.
        {num_threads}

        Returns
        -------
        Moments
            This accumulator.

        {examples}
        >>> acc = fn.Moments(axis=(0, 2))
        >>> acc.update(np.ones((2, 3, 4))) is acc
        True
        >>> print(acc.count, acc.mean)
        8 [1. 1. 1.]
        """
        x = V.stats_input(batch, "batch")
        axes = V.axes(self._axis, x.ndim)
        nt = _threads.resolve(V.num_threads(num_threads))
        kept_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes)
        if self._axis is not None and self._ndim is not None and x.ndim != self._ndim:
            raise ValueError(f"batch has {x.ndim} dimensions, earlier batches had "
                             f"{self._ndim}")
        if self._shift is not None and kept_shape != self._shift.shape:
            raise ValueError(f"batch has non-reduced dimensions {kept_shape}, earlier "
                             f"batches had {self._shift.shape}")
        if self._axis is not None:
            self._ndim, self._axes = x.ndim, axes
        if x.size == 0:
            if self._shift is None:
                self._shift, self._dev, self._m2 = (np.zeros(kept_shape) for _ in range(3))
            return self
        self._merge_raw(raw_moments(x, axes, nt))
        return self

    def _merge_raw(self, raw: Raw) -> None:
        """Chan's merge of `raw` into this accumulator (merge_raw)."""
        merged = merge_raw(self._raw(), raw)
        self._count = merged.count
        self._shift, self._dev, self._m2 = (np.array(a, dtype=np.float64, copy=True)
                                            for a in merged[1:])

    def _raw(self) -> Raw:
        if self._shift is None or self._dev is None or self._m2 is None:
            empty = np.zeros(())
            return Raw(0, empty, empty, empty)      # merges as a no-op (count 0)
        return Raw(self._count, self._shift, self._dev, self._m2)

    @fill
    def merge(self, other: "Moments") -> "Moments":
        """Merge the statistics of another accumulator over the same axis; returns self.
        Axes compare as normalized for the batches' rank (axis=-2 and axis=(0,) are axis 0
        of 2-D batches); an accumulator without data merges as a no-op.

        Parameters
        ----------
        other : Moments
            Statistics over the same axis (e.g. from another process).

        Returns
        -------
        Moments
            This accumulator, now with the statistics of both.

        {examples}
        >>> a = fn.Moments().update(np.array([1., 2.]))
        >>> b = fn.Moments().update(np.array([3., 4., 5.]))
        >>> print(a.merge(b).count, a.mean, a.var())
        5 3.0 2.0
        """
        if not isinstance(other, Moments):
            raise TypeError(f"can only merge a Moments, got {type(other).__name__}")
        if other._count == 0:
            return self
        other_shape = other._require_data()[0].shape
        if self._count == 0:
            if self._shift is not None and self._shift.shape != other_shape:
                raise ValueError(f"cannot merge Moments with non-reduced shape "
                                 f"{other_shape} into one with {self._shift.shape}")
            self._ndim, self._axes = other._ndim, other._axes
            self._merge_raw(other._raw())
            return self
        if self._axes_of_data() != other._axes_of_data():
            raise ValueError(f"cannot merge Moments over axis {other._axis!r} into Moments "
                             f"over axis {self._axis!r}")
        shape = self._require_data()[0].shape
        if shape != other_shape:
            raise ValueError(f"cannot merge Moments with non-reduced shape "
                             f"{other_shape} into one with {shape}")
        self._merge_raw(other._raw())
        return self

    def _axes_of_data(self) -> tuple[int | None, tuple[int, ...]] | None:
        """The reduced axes as normalized for the batches seen (None: all of them)."""
        return (self._ndim, self._axes) if self._axes is not None else None

    def __add__(self, other: object) -> "Moments":
        if not isinstance(other, Moments):
            return NotImplemented
        return self.copy().merge(other)

    @fill
    def copy(self) -> "Moments":
        """An independent copy of this accumulator.

        {examples}
        >>> a = fn.Moments().update(np.array([1., 3.]))
        >>> b = a.copy().update(np.array([5.]))
        >>> print(a.count, b.count)
        2 3
        """
        new = Moments.__new__(Moments)
        new.__dict__.update(self.__dict__)
        for name in ("_shift", "_dev", "_m2"):
            if getattr(self, name) is not None:
                setattr(new, name, getattr(self, name).copy())
        return new

    def _require_data(self) -> tuple[F64, F64, F64]:
        if self._count == 0 or self._shift is None or self._dev is None or self._m2 is None:
            raise ValueError("Moments has seen no data yet")
        return self._shift, self._dev, self._m2

    @property
    def count(self) -> int:
        """Number of values reduced into each statistic (an int)."""
        return self._count

    @property
    def mean(self) -> F64:
        """Mean over the reduced axes (float64 array)."""
        shift, dev, _ = self._require_data()
        return shift + dev

    @fill
    def var(self, ddof: float = 0) -> F64:
        """Variance with NumPy's meaning of ddof (float64 array).

        {ddof_tail}
        >>> acc = fn.Moments().update(np.array([1., 2., 3., 4.]))
        >>> print(acc.var(), round(float(acc.var(ddof=1)), 4))
        1.25 1.6667
        """
        m2 = self._require_data()[2]
        return _variance(m2, self._count, V.ddof(ddof))

    @fill
    def std(self, ddof: float = 0) -> F64:
        """Standard deviation with NumPy's meaning of ddof (float64 array).

        {ddof_tail}
        >>> acc = fn.Moments(axis=1).update(np.array([[1., 3.], [2., 2.]]))
        >>> print(acc.std())
        [1. 0.]
        """
        return np.sqrt(self.var(ddof))

    def __repr__(self) -> str:
        shape = None if self._shift is None else self._shift.shape
        return f"Moments(axis={self._axis!r}, count={self._count}, shape={shape})"

    @classmethod
    def _from_raw(cls, raw: Raw, axis: Axis, ndim: int) -> "Moments":
        """The accumulator of Raw statistics of ndim-dimensional data over `axis` (the
        statistics of a whole dask array, fastnorm.dask.accumulate)."""
        acc = cls(axis)
        if axis is not None:
            acc._ndim, acc._axes = ndim, V.axes(axis, ndim)
        acc._merge_raw(raw)
        return acc

    # Pickling (dask.distributed ships accumulators between processes) and dask's
    # tokenization see the same plain state: the axis, the rank and normalized axes the
    # batches fixed, the count, and three C-contiguous float64 arrays (or None).
    _STATE_VERSION = 1

    def __getstate__(self) -> tuple[Any, ...]:
        arrays = tuple(None if a is None else np.asarray(a, dtype=np.float64, order="C")
                       for a in (self._shift, self._dev, self._m2))
        return (self._STATE_VERSION, self._axis, self._ndim, self._axes, int(self._count),
                *arrays)

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and state and state[0] == self._STATE_VERSION):
            raise ValueError("cannot unpickle a Moments saved by an incompatible version "
                             "of fastnorm")
        (_, self._axis, self._ndim, self._axes, self._count, self._shift, self._dev,
         self._m2) = state

    def __dask_tokenize__(self) -> tuple[str, int, str, str]:
        """A deterministic token: equal state gives the same token in any process."""
        version, *plain, shift, dev, m2 = self.__getstate__()
        digest = hashlib.sha256()
        for a in (shift, dev, m2):
            digest.update(b"-" if a is None else repr(a.shape).encode() + a.tobytes())
        return ("fastnorm.Moments", version, repr(plain), digest.hexdigest())
