"""Tensors in, tensors out: the one hook every public function goes through.

`accepts_tensors(func)` wraps a public function (or method) so that CPU torch tensors may
stand wherever it takes arrays; the results then come back as tensors (fastnorm/torch.py does
the translation). torch is never imported here: a process that has not imported torch cannot
hold a tensor, so the wrapper looks for torch in sys.modules and, when it is there, for a
tensor among the arguments (and one level into list/tuple arguments, for sequences of
arrays). Calls without tensors go straight to `func`. A function with a fast path (`fast`:
the same signature, None for a call it does not take) tries it first: a call it takes has
only ndarrays and plain numbers, and skips the scan (~0.5-1 us, once torch is imported: more
than the kernel of a tiny call).
"""
import functools
import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import numpy as np

_F = TypeVar("_F", bound=Callable[..., Any])


def _positional_names(func: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(p.name for p in inspect.signature(func).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


# argument types that are never tensors nor hold them (a set look-up is cheaper than
# isinstance against torch.Tensor, whose metaclass makes that check slow)
_PLAIN = frozenset({type(None), bool, int, float, str, np.ndarray, np.dtype, np.float32,
                    np.float64, type})


def _has_tensor(values: Iterable[Any], tensor_type: type) -> bool:
    # (plain loops: a generator expression here cost more than the call it guards)
    for value in values:
        cls = type(value)
        if cls in _PLAIN:
            continue
        if cls is tuple or cls is list:
            for item in value:
                if type(item) not in _PLAIN and isinstance(item, tensor_type):
                    return True
        elif isinstance(value, tensor_type):
            return True
    return False


def accepts_tensors(func: _F, *, writes: Iterable[str] = ("out",),
                    fast: Callable[..., Any] | None = None) -> _F:
    """`func` taking CPU torch tensors too. `writes`: the arguments it may write in place
    (their tensors' autograd version counters are bumped after the call). `fast`: func's
    fast path, tried first (see above). A module-level function is published as
    fastnorm.<name> (so that pickle finds this wrapper)."""
    names = _positional_names(func)
    written = frozenset(writes)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if fast is not None:
            try:
                result = fast(*args, **kwargs)
            except TypeError:        # arguments that do not bind: func raises its own error
                result = None
            if result is not None:
                return result
        torch = sys.modules.get("torch")
        if torch is not None:
            tensor_type = getattr(torch, "Tensor", None)
            if tensor_type is not None and (_has_tensor(args, tensor_type)
                                            or _has_tensor(kwargs.values(), tensor_type)):
                from . import torch as adapter
                return adapter.call_with_tensors(func, names, written, args, kwargs)
        return func(*args, **kwargs)

    if "." not in func.__qualname__:
        wrapper.__module__ = "fastnorm"
    return cast(_F, wrapper)
