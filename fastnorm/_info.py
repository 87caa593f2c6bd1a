"""What this installation has: version, OpenMP, kernel variants, threads."""
import dataclasses
import platform
from typing import Any

from . import _cache, _cpu, _dispatch, _openmp_helpers, _threads
from ._version import __version__


def build_info() -> dict[str, Any]:
    """A dict describing the build and the runtime choices of this process.

    Returns
    -------
    dict
        version, python, machine, openmp (whether the kernels were built with OpenMP),
        openmp_version, max_threads, forked_child_serial, cpu_x86_64_level,
        kernel_variant (the one in use), available_variants, caches (bytes of L1d, L2 and
        L3 per thread, and where they were read) and cache_tuning (the kernels' prefetch and
        pipelining thresholds derived from them).

    Examples
    --------
    >>> import fastnorm as fn
    >>> info = fn.build_info()
    >>> info["version"] == fn.__version__, info["kernel_variant"] in info["available_variants"]
    (True, True)
    """
    return {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "openmp": _openmp_helpers.OPENMP_ENABLED,
        "openmp_version": _openmp_helpers.OPENMP_VERSION,
        "max_threads": _openmp_helpers.get_max_threads(),
        "forked_child_serial": _threads.forked_serial(),
        "cpu_x86_64_level": _cpu.x86_64_level(),
        "kernel_variant": _dispatch.current_variant(),
        "available_variants": _dispatch.available_variants(),
        "caches": dataclasses.asdict(_cache.CACHES),
        "cache_tuning": _dispatch.kernels().cache_tuning(),
    }
