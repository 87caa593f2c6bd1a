# The OpenMP helpers extension (fastnorm/_openmp_helpers.pyx).
OPENMP_ENABLED: bool
OPENMP_VERSION: int

def get_max_threads() -> int: ...
