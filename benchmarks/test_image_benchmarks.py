"""pytest-benchmark suite over the image cases of fastnorm's benchmark (fastnorm._bench.images):
normalize_image against NumPy, the roof and, when installed, OpenCV, albumentations and
PyTorch tensor ops, one benchmark per (case, implementation), grouped by case.

    pytest benchmarks/test_image_benchmarks.py --benchmark-only
    pytest benchmarks/ --benchmark-disable     # each once, as plain tests (CI)

Every test first checks its implementation's result against the float64 formula
(fastnorm._reference.ref_normalize_image). The peers come after every fastnorm, NumPy and
roof test (their threads keep spinning after a call); a peer that is not installed is
skipped, and one that cannot run a case (OpenCV has no per-image mode) is skipped with the
reason.
"""
import functools

import pytest

from fastnorm._bench import Unavailable, checked_runner
from fastnorm._bench import images as BI

THREADS = BI.DEFAULT_THREADS

PARAMS = [pytest.param(case, impl, id=f"{case.id}-{impl}")
          for peers in (False, True) for case in BI.IMAGE_CASES
          for impl in BI.IMAGE_IMPLEMENTATIONS if (impl in BI.IMAGE_PEERS) == peers]


@functools.lru_cache(maxsize=1)
def _setup(case):
    return BI.ImageSetup(case, THREADS)


@pytest.mark.parametrize("case, impl", PARAMS)
def test_image_benchmark(benchmark, case, impl):
    if impl in BI.IMAGE_PEERS:
        pytest.importorskip(BI.IMAGE_PEERS[impl], exc_type=ImportError)
    try:        # one call on fresh data vs the reference first
        runner = checked_runner(_setup(case), impl)
    except Unavailable as exc:
        pytest.skip(str(exc))
    benchmark.group = f"{case.label} {case.shape_str}"
    benchmark.name = impl
    benchmark.extra_info.update(case=case.id, impl=impl, threads=THREADS,
                                bytes_moved=case.traffic())
    with runner.entered():
        benchmark(runner.call)
