"""What this installation has: version, OpenMP, kernel variants, threads."""
import platform
from typing import Any

from . import _cpu, _dispatch, _openmp_helpers, _threads
from ._version import __version__


def build_info() -> dict[str, Any]:
    """A dict describing the build and the runtime choices of this process.

    Returns
    -------
    dict
        version, python, machine, openmp (whether the kernels were built with OpenMP),
        openmp_version, max_threads, forked_child_serial, cpu_x86_64_level,
        kernel_variant (the one in use) and available_variants.

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
    }
