"""Choice of the kernel variant (instruction set) at import.

The kernels are compiled once per x86-64 level from one source (the table in _variants.py,
which setup.py reads too). The best variant that is built and that this CPU runs is used,
unless FASTNORM_KERNELS names another one. `kernels()` is the module every plan calls;
`use_variant` changes it for the process and `using` for a block (tests, benchmarks).
"""
import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

from . import _cache, _cpu
from ._variants import VARIANTS

ENV_VAR = "FASTNORM_KERNELS"

_current: ModuleType | None = None
_tuned: set[str] = set()


def load(name: str) -> ModuleType | None:
    """The compiled module of variant `name`, or None when it is not built; the first load
    gives it the thresholds of this machine's caches (_cache.py)."""
    try:
        module = importlib.import_module("fastnorm." + VARIANTS[name][0])
    except ImportError:
        return None
    if name not in _tuned:
        module.set_cache_tuning(**_cache.TUNING)
        _tuned.add(name)
    return module


def _runs_here(name: str) -> bool:
    level = VARIANTS[name][1]
    return level is None or level <= _cpu.x86_64_level()


def available_variants() -> list[str]:
    """Variants that are built and that this CPU can run, best first."""
    return [name for name in VARIANTS if _runs_here(name) and load(name) is not None]


def kernels() -> ModuleType:
    """The kernel module of the current variant (its functions are the compiled entry points
    of _kernels.pxi, untyped to mypy: the module is picked at run time)."""
    assert _current is not None
    return _current


def current_variant() -> str:
    """The name of the current variant."""
    return str(kernels().VARIANT)


def _check(name: str) -> ModuleType:
    if name not in VARIANTS:
        raise ValueError(f"unknown kernel variant {name!r}; known: {', '.join(VARIANTS)}")
    if not _runs_here(name):
        raise RuntimeError(f"kernel variant {name!r} needs CPU features this machine lacks")
    module = load(name)
    if module is None:
        raise RuntimeError(f"kernel variant {name!r} is not built in this installation")
    return module


def use_variant(name: str, *, check_cpu: bool = True) -> ModuleType:
    """Make `name` the kernel variant every call uses from now on; returns the module.
    check_cpu=False skips the CPU check (scripts/smoke.py's negative control only)."""
    global _current
    module = _check(name) if check_cpu else (load(name) or _check(name))
    _current = module
    return module


@contextlib.contextmanager
def using(name: str) -> Iterator[ModuleType]:
    """Run a block with kernel variant `name`, then restore the previous one."""
    global _current
    previous = _current
    use_variant(name)
    try:
        yield kernels()
    finally:
        _current = previous


def _select() -> ModuleType:
    forced = os.environ.get(ENV_VAR, "").strip()
    return use_variant(forced or available_variants()[0])


_select()
