"""The texts that many NumPy-style docstrings share, written once.

A docstring names a shared text by a line holding only ``{key}``; `fill` (a decorator)
replaces that line with the text of TEXTS[key], indented as the line was, so the rendered
``__doc__`` is a complete NumPy-style docstring (its examples run as doctests). Braces
elsewhere in a docstring are left alone.
"""
import re
from typing import TypeVar

_T = TypeVar("_T")

_PLACEHOLDER = re.compile(r"^([ \t]*)\{([a-z_]+)\}[ \t]*$", re.MULTILINE)

_FLOATS = "float16, float32 or float64 data"

TEXTS = {
    # the in-memory functions (fastnorm._norms, fastnorm._stats)
    "x_rows": f"x : ndarray\n    {_FLOATS}.",
    "x_channels": f"x : ndarray\n    ``(N, C, *spatial)`` {_FLOATS}.",
    "normalized_shape": "normalized_shape : int or sequence of int\n"
                        "    The trailing dims normalized together (k = its length).",
    "affine_channels": "weight, bias : array_like, optional\n"
                       "    Per-channel affine of shape ``(C,)``.",
    "eps": "eps : float\n    Added to the variance.",
    "momentum": "momentum : float\n"
                "    Weight of the new statistics in the running-statistics update.",
    "out": "out : ndarray, optional\n    Where to write the result (``out=x``: in place).",
    "num_threads": "num_threads : int, optional\n"
                   "    OpenMP threads (default: the OpenMP default at call time).",
    "returns_y": "Returns\n-------\ny : ndarray\n    Same shape and dtype as x.",
    "ddof": "ddof : float\n    Delta degrees of freedom: the divisor of the variance is "
            "``count - ddof``.",
    "returns_kept": "Returns\n-------\nndarray or numpy.float64\n"
                    "    Shaped like the non-reduced dims (a scalar for axis=None).",
    "params_rows": "Parameters\n----------\n{x_rows}",
    "params_channels": "Parameters\n----------\n{x_channels}",
    "ddof_tail": "Parameters\n----------\n{ddof}\n\n{returns_kept}\n\n{examples}",
    "apply_tail": "{eps}\n{out}\n{num_threads}\n\n{returns_y}\n\n{examples}",
    "examples": "Examples\n--------\n>>> import numpy as np\n>>> import fastnorm as fn",
    # fastnorm.dask
    "dask_x_numbers": "x : dask.array.Array\n    Float or integer data, any chunking.",
    "dask_x_rows": f"x : dask.array.Array\n    {_FLOATS}, any chunking.",
    "dask_x_channels": f"x : dask.array.Array\n    ``(N, C, *spatial)`` {_FLOATS}, any "
                       f"chunking.",
    "dask_params_numbers": "Parameters\n----------\n{dask_x_numbers}",
    "dask_params_rows": "Parameters\n----------\n{dask_x_rows}",
    "dask_params_channels": "Parameters\n----------\n{dask_x_channels}",
    "split_every": "split_every : int or dict, optional\n"
                   "    Fan-in of the tree reduction, as in dask's reductions.",
    "dask_returns": "Returns\n-------\ndask.array.Array\n    Lazy, chunked like x.",
    "dask_tail": "{dask_returns}\n\n{dask_examples}",
    "dask_examples": "Examples\n--------\n>>> import dask\n>>> import dask.array as da\n"
                     ">>> import numpy as np\n>>> import fastnorm.dask as fnd\n"
                     ">>> x = da.from_array(np.arange(24.0).reshape(4, 3, 2), "
                     "chunks=(2, 3, 2))",
}


def _indented(match: re.Match[str]) -> str:
    indent, key = match.group(1), match.group(2)
    return "\n".join(indent + line if line else line for line in TEXTS[key].split("\n"))


def render(doc: str) -> str:
    """`doc` with each ``{key}`` line replaced by its shared text (which may hold such
    lines itself)."""
    while True:
        filled = _PLACEHOLDER.sub(_indented, doc)
        if filled == doc:
            return doc
        doc = filled


def fill(func: _T) -> _T:
    """Decorator: func.__doc__ rendered (see `render`)."""
    if func.__doc__:                # (None under python -OO)
        func.__doc__ = render(func.__doc__)  # functions and classes: writable
    return func
