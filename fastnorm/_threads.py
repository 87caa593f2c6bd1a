"""Thread count of a call, resolved once and handed to the kernels; fork safety."""
import os

from ._openmp_helpers import get_max_threads

_parallel_used = False      # this process has asked for a parallel region
_forked_child = False       # ... and we are a child forked after that


def _after_fork_in_child() -> None:
    # GNU libgomp is not fork-safe: a child forked after the parent ran a parallel region
    # hangs in its first parallel region. Serial kernels give the same bits, so use them.
    global _forked_child
    if _parallel_used:
        _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# More threads than this give the same bits and no speed; a runaway count (say 10**9) would
# make the OpenMP runtime fail to create its threads and abort the process.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))


def resolve(num_threads: int | None) -> int:
    """Number of threads for a kernel call: OpenMP's default at call time for None."""
    global _parallel_used
    n = get_max_threads() if num_threads is None else min(int(num_threads), MAX_THREADS)
    if _forked_child:
        return 1
    if n > 1:
        _parallel_used = True
    return n


def forked_serial() -> bool:
    """True when this is a forked child that runs serial kernels for fork safety."""
    return _forked_child
