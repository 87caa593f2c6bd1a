"""pytest-benchmark suite over fastnorm's benchmark case set (fastnorm._bench).

One benchmark per (case, implementation), grouped by case:

    pytest benchmarks/ --benchmark-only        # the comparison (groups = cases)
    pytest benchmarks/ --benchmark-disable     # each once, as plain tests (CI)

Every test first checks its implementation's result against the float64 reference
(fastnorm._reference) on fresh data, so a benchmark never times a wrong kernel and the CI run
catches a broken runner. As in `python -m fastnorm`, the peers come last: fastnorm, NumPy and
the roof of every case run before any PyTorch or ONNX Runtime call, whose spinning threads
would slow them.
PyTorch and ONNX Runtime tests are skipped when those packages are not installed, and an
ONNX op this ONNX Runtime cannot run is skipped with the reason.
"""
import functools

import pytest

from fastnorm import _bench as B

THREADS = B.DEFAULT_THREADS

# the peers after everything else; case-major within each part, so that the one cached Setup
# below serves all implementations of a case
PARAMS = [pytest.param(case, impl, id=f"{case.id}-{impl}")
          for peers in (False, True) for case in B.CASES
          for impl in B.IMPLEMENTATIONS if (impl in B.PEERS) == peers and B.applies(impl, case)]


@functools.lru_cache(maxsize=1)      # one case's data at a time (the largest are 100 MB)
def _setup(case):
    return B.Setup(case, THREADS)


@pytest.mark.parametrize("case, impl", PARAMS)
def test_benchmark(benchmark, case, impl):
    if impl in B.PEERS:
        pytest.importorskip(B.PEERS[impl], exc_type=ImportError)
        if impl == "onnxruntime":
            pytest.importorskip("onnx", exc_type=ImportError)
    try:        # one call on fresh data vs the reference first
        runner = B.checked_runner(_setup(case), impl)
    except B.Unavailable as exc:
        pytest.skip(str(exc))

    benchmark.group = f"{case.label} {case.shape_str}"
    benchmark.name = impl
    benchmark.extra_info.update(case=case.id, impl=impl, threads=THREADS,
                                nbytes=case.nbytes())
    if runner.reset:
        runner.reset()
    with runner.entered():
        benchmark(runner.call)


@pytest.mark.parametrize("case", [c for c in B.CASES if c.channels_last], ids=lambda c: c.id)
def test_in_place_runner_keeps_the_layout_of_the_case(case):
    """A channels-last case is timed on channels-last memory: the in-place runner's buffer
    has the strides of the case's data (a C-order copy there once had the channels-last
    rows time NCHW data)."""
    setup = _setup(case)
    buf = setup.runner("fastnorm").output(None)
    assert buf.strides == setup.x0.strides
    assert buf.shape == setup.x0.shape and not buf.flags.c_contiguous


@pytest.mark.parametrize("case", [c for c in B.CASES if c.channels_last], ids=lambda c: c.id)
def test_nchw_runner_times_the_same_values_in_nchw_memory(case):
    """The /NCHW column's reference: the same op on the same values, C-contiguous."""
    setup = _setup(case)
    buf = setup.runner("fastnorm_nchw").output(None)
    assert buf.flags.c_contiguous and buf.shape == setup.x0.shape
    assert (buf == setup.x0).all()
