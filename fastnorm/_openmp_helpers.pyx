# cython: language_level=3
"""The one place that calls the OpenMP runtime directly (guarded by _openmp.h)."""

cdef extern from "_openmp.h":
    int FN_HAVE_OPENMP
    int FN_OPENMP_VERSION
    int fn_omp_get_max_threads() noexcept nogil


OPENMP_ENABLED = bool(FN_HAVE_OPENMP)
OPENMP_VERSION = FN_OPENMP_VERSION   # the _OPENMP date macro, 0 for a serial build


def get_max_threads():
    """OpenMP's default team size at call time (honours OMP_NUM_THREADS and threadpoolctl)."""
    return fn_omp_get_max_threads()
