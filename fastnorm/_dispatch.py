"""Choice of the kernel variant (instruction set) at import.

The kernels are compiled once per x86-64 level from one source (setup.py). The best variant
that is built and that this CPU runs is used, unless FASTNORM_KERNELS names another one.
"""
import importlib
import os

from . import _cpu

# best first; level = the x86-64 micro-architecture level the variant needs
_VARIANTS = {
    "native": ("_kernels_native", None),
    "x86-64-v4": ("_kernels_x86_64_v4", 4),
    "x86-64-v3": ("_kernels_x86_64_v3", 3),
    "baseline": ("_kernels_baseline", 0),
}
ENV_VAR = "FASTNORM_KERNELS"


def _load(name):
    try:
        return importlib.import_module("fastnorm." + _VARIANTS[name][0])
    except ImportError:
        return None


def _runs_here(name):
    level = _VARIANTS[name][1]
    return level is None or level <= _cpu.x86_64_level()


def available_variants():
    """Variants that are built and that this CPU can run, best first."""
    return [name for name in _VARIANTS if _runs_here(name) and _load(name) is not None]


def use_variant(name):
    """Make `name` the kernel variant every call uses from now on; returns the module."""
    global current
    if name not in _VARIANTS:
        raise ValueError(f"unknown kernel variant {name!r}; known: {', '.join(_VARIANTS)}")
    if not _runs_here(name):
        raise RuntimeError(f"kernel variant {name!r} needs CPU features this machine lacks")
    module = _load(name)
    if module is None:
        raise RuntimeError(f"kernel variant {name!r} is not built in this installation")
    current = module
    return module


def _select():
    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        return use_variant(forced)
    return use_variant(available_variants()[0])


current = None
_select()
