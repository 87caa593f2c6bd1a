"""Runners: one module per implementation, each a table op -> a function building the
callable for a Setup (numpy.py, fastnorm.py, torch.py, onnxruntime.py).

The peer modules (torch.py, onnxruntime.py) import their runtime at their own import, and
are imported only when a peer runner is built: looking up whether a peer is installed
(`missing`) finds its package without importing it, because importing PyTorch or ONNX
Runtime already starts threads.
"""
import contextlib
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any, TypeVar

Builder = Callable[[Any], "Runner"]       # a Setup -> its Runner
T = TypeVar("T")

# every implementation, in table order; fastnorm_nchw (channels-last cases only): fastnorm in
# place on NCHW memory of the same values, timed beside the case (its /NCHW column)
IMPLEMENTATIONS = ("fastnorm", "fastnorm_alloc", "fastnorm_nchw", "numpy", "roof", "torch",
                   "onnxruntime")
PEERS = {"torch": "torch", "onnxruntime": "onnxruntime"}   # implementation -> module needed
_REQUIRES = {"torch": ("torch",), "onnxruntime": ("onnxruntime", "onnx")}

# implementation -> (module of this package, its function building the Runner of a Setup)
_BUILDERS = {
    "fastnorm": ("fastnorm", "in_place"),
    "fastnorm_alloc": ("fastnorm", "allocating"),
    "fastnorm_nchw": ("fastnorm", "in_place_nchw"),
    "numpy": ("numpy", "runner"),
    "roof": ("fastnorm", "roof"),
    "torch": ("torch", "runner"),
    "onnxruntime": ("onnxruntime", "runner"),
}


class Unavailable(Exception):
    """This implementation cannot run this case here (peer missing, op unsupported)."""


class OptionalModule:
    """A library a runner module imports at its own import; when that fails (ImportError, or
    a broken install raising anything else), `get` raises Unavailable with the error."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.module: ModuleType | None
        self.error: str | None
        try:
            self.module, self.error = importlib.import_module(name), None
        except Exception as exc:
            self.module, self.error = None, f"{type(exc).__name__}: {exc}"

    def get(self) -> ModuleType:
        if self.module is None:
            raise Unavailable(f"{self.name} cannot be imported ({self.error})")
        return self.module


class Runner:
    """One implementation of one case: `call()` runs it once; `reset()` (may be None) restores
    its input buffer between rounds (not timed); `output()` the result of the last call;
    `context` a context manager factory entered around timed calls (torch inference mode);
    `settle` seconds to pause after its samples (None: Settings.settle) so that its idle
    worker threads stop spinning before the next runner is timed."""

    def __init__(self, call: Callable[[], Any], output: Callable[[], Any] | None = None,
                 reset: Callable[[], Any] | None = None,
                 context: Callable[[], AbstractContextManager[Any]] | None = None,
                 note: str = "", settle: float | None = None) -> None:
        self.call = call
        self.reset = reset
        self.context = context
        self.note = note
        self.settle = settle
        self._output = output

    def output(self, last: Any) -> Any:
        return self._output() if self._output is not None else last

    def entered(self) -> AbstractContextManager[Any]:
        """The context its calls run in (a no-op one when it has none)."""
        return self.context() if self.context else contextlib.nullcontext()


def for_op(table: Mapping[str, T], op: str) -> T:
    """The entry of an implementation's table for `op`."""
    try:
        return table[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}") from None


def named_table(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """op -> builder, from a runner module's functions named after the ops (`_layer_norm`,
    ...); BatchNorm's two modes from its `_batch_norm(training)`. (The builders' type is the
    module's: its table is annotated where it is made.)"""
    from ..cases import OPS
    table = {op: namespace["_" + op] for op in OPS if not op.startswith("batch_norm")}
    table["batch_norm_eval"] = namespace["_batch_norm"](training=False)
    table["batch_norm_train"] = namespace["_batch_norm"](training=True)
    return table


def build(setup: Any, impl: str) -> "Runner":
    """The Runner of `impl` for `setup`; raises Unavailable when it cannot run here."""
    try:
        module, function = _BUILDERS[impl]
    except KeyError:
        raise ValueError(f"unknown implementation {impl!r}") from None
    builder: Builder = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return builder(setup)


def missing(impl: str) -> list[str]:
    """The packages `impl` needs that are not installed, found without importing them."""
    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False
    return [m for m in _REQUIRES.get(impl, ()) if not found(m)]


def installed(impl: str) -> bool:
    return not missing(impl)


def applies(impl: str, case: Any) -> bool:
    """Whether `impl` belongs in the run of `case` (fastnorm_nchw: channels-last cases)."""
    return impl != "fastnorm_nchw" or bool(getattr(case, "channels_last", False))


def available_implementations() -> list[str]:
    """Implementations whose packages are installed here, in table order."""
    return [impl for impl in IMPLEMENTATIONS if installed(impl)]
