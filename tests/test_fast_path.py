"""The fast path (rows_fast, batch_norm_eval_fast) gives the general path's results, bit for
bit, and hands every unusual argument to the general path (which validates it).

Tiny calls run it serially with the GIL held; from 32768 elements on it resolves the thread
count, releases the GIL and runs the general path's parallel kernel bodies: those calls must
give the general path's bits for every thread count, in place and allocating, be taken (the
kernels return a result, batch_norm declines only large (N, C) input), run concurrently from
several Python threads with the GIL released, and match float64 NumPy formulas."""
import numpy as np
import pytest

import fastnorm as fn
from _helpers import calls_until_another_thread_ran, rng_for, run_in_threads
from fastnorm import _dispatch


@pytest.fixture(params=[np.float32, np.float64])
def dtype(request):
    return request.param


def _rng():
    return np.random.default_rng(11)


@pytest.mark.parametrize("shape", [(1, 768), (3, 5, 64), (7,)])
@pytest.mark.parametrize("affine", [False, True])
def test_layer_and_rms_norm_match_general_path(shape, affine, dtype):
    rng = _rng()
    x = rng.normal(100.0, 3.0, size=shape).astype(dtype)
    n = shape[-1]
    w = rng.random(n).astype(dtype) if affine else None
    b = rng.random(n).astype(dtype) if affine else None
    # a separate out= buffer takes the general (validated, planned) path
    general = fn.layer_norm(x, n, w, b, out=np.empty_like(x))
    np.testing.assert_array_equal(fn.layer_norm(x, n, w, b), general)
    np.testing.assert_array_equal(fn.layer_norm(x, n, w, b, num_threads=2), general)
    np.testing.assert_array_equal(fn.rms_norm(x, n, w), fn.rms_norm(x, n, w, out=np.empty_like(x)))
    inplace = x.copy()
    assert fn.layer_norm(inplace, n, w, b, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, general)


@pytest.mark.parametrize("shape", [(1, 64, 8, 8), (4, 3), (2, 5, 7)])
@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_eval_matches_general_path(shape, affine, dtype):
    rng = _rng()
    x = rng.normal(-4.0, 2.0, size=shape).astype(dtype)
    c = shape[1]
    rm, rv = rng.normal(size=c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    w = rng.random(c).astype(dtype) if affine else None
    b = rng.random(c).astype(dtype) if affine else None
    expected = fn.batch_norm(x, rm, rv, w, b, out=np.empty_like(x))   # the general path
    np.testing.assert_array_equal(fn.batch_norm(x, rm, rv, w, b), expected)
    inplace = x.copy()
    assert fn.batch_norm(inplace, rm, rv, w, b, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)


def test_unusual_arguments_reach_the_general_path():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="eps"):
        fn.layer_norm(x, 4, eps=float("nan"))
    with pytest.raises(ValueError, match="num_threads"):
        fn.layer_norm(x, 4, num_threads=0)
    with pytest.raises(ValueError, match="momentum"):
        fn.batch_norm(x, np.zeros(4, np.float32), np.ones(4, np.float32),
                      momentum=float("nan"))
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fn.layer_norm(ro, 4, out=ro)
    with pytest.raises(ValueError, match="weight"):
        fn.layer_norm(x, 4, weight=np.ones(3, np.float32))
    # a non-contiguous input and a parameter of another dtype are fine, just not fast
    xt = np.arange(8.0, dtype=np.float32).reshape(4, 2).T
    np.testing.assert_array_equal(fn.layer_norm(xt, 4, np.ones(4)),
                                  fn.layer_norm(np.ascontiguousarray(xt), 4, np.ones(4)))


def test_fast_path_is_taken_for_simple_tiny_calls():
    from fastnorm import _dispatch
    x = np.ones((2, 8), np.float32)
    w = np.ones(8, np.float32)
    kernels = _dispatch.kernels()
    assert kernels.rows_fast(x, 8, w, None, 1e-5, False, None, None) is not None
    assert kernels.rows_fast(x, (8,), w, None, None, True, x, 2) is x
    rm, rv = np.zeros(8, np.float32), np.ones(8, np.float32)
    assert kernels.batch_norm_eval_fast(x, rm, rv, None, None, 1e-5, None, None) is not None
    # what it does not take: non-contiguous x in place, a parameter of another dtype
    assert kernels.rows_fast(np.ones((8, 2), np.float32).T, 8, None, None, 1e-5, False, None,
                             None) is None
    assert kernels.rows_fast(x, 8, w.astype(np.float64), None, 1e-5, False, None, None) is None


# ---------------------------------------------------------------------------------------
# the fast path for large inputs (>= 32768 elements: threads resolved, GIL released, the
# general path's parallel kernel bodies)
# ---------------------------------------------------------------------------------------

PARALLEL_MIN_ELEMENTS = 32768     # from this size on, a fast-path call may run in parallel
THREADS = (1, 2, 3, None)
ROW_SHAPES = [(4, 256, 768),      # many rows
              (3, 40000),         # few large rows: another parallel strategy
              (2, 33, 1000)]      # rows that do not divide among the threads
BN_SHAPES = [(8, 64, 28, 28), (2, 3, 100, 120), (16, 5, 700)]


def _data(shape, dtype, loc, scale, *keys):
    return (rng_for("x", shape, *keys).standard_normal(shape) * scale + loc).astype(dtype)


def _params(n, dtype, affine, *keys):
    if not affine:
        return None, None
    rng = rng_for("params", n, *keys)
    return rng.uniform(0.5, 1.5, n).astype(dtype), rng.normal(0.0, 1.0, n).astype(dtype)


def assert_bitwise(got, expected, what=""):
    """Same shape, dtype and bits (unlike assert_array_equal: -0.0 != 0.0, NaN payloads)."""
    assert isinstance(got, np.ndarray), what
    assert got.shape == expected.shape and got.dtype == expected.dtype, what
    uint = np.uint32 if got.dtype == np.float32 else np.uint64
    same = np.ascontiguousarray(got).view(uint) == np.ascontiguousarray(expected).view(uint)
    assert same.all(), "%s: %d of %d values differ in their bits" % (
        what, same.size - int(same.sum()), same.size)


def _check_against_general(call, x, what):
    """call(x, out, nt) for every nt in THREADS: the fast path (out=None and in place on a
    copy) gives the general path's bits (out=np.empty_like(x), same nt), and every nt gives
    the same bits. Returns the result."""
    x_before = x.copy()
    first = None
    for nt in THREADS:
        tag = "%s num_threads=%s" % (what, nt)
        general = call(x, np.empty_like(x), nt)
        assert np.isfinite(general).all(), tag
        fast = call(x, None, nt)
        assert fast is not x, tag
        assert_bitwise(fast, general, tag + " allocating")
        inplace = x.copy()
        assert call(inplace, inplace, nt) is inplace, tag
        assert_bitwise(inplace, general, tag + " in place")
        if first is None:
            first = general
        else:
            assert_bitwise(general, first, tag + " vs num_threads=1")
    assert_bitwise(x, x_before, what + ": the input was modified")
    return first


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("affine", [False, True])
def test_large_layer_norm_matches_general_path(shape, affine, dtype):
    x = _data(shape, dtype, 100.0, 3.0, "ln", affine)
    assert x.size >= PARALLEL_MIN_ELEMENTS
    n = shape[-1]
    w, b = _params(n, dtype, affine, "ln")
    eps = 1e-3 if affine else 1e-5

    def call(x, out, nt):
        return fn.layer_norm(x, (n,) if affine else n, w, b, eps, out=out, num_threads=nt)
    _check_against_general(call, x, "layer_norm %s %s" % (shape, np.dtype(dtype).name))


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("affine", [False, True])
def test_large_rms_norm_matches_general_path(shape, affine, dtype):
    x = _data(shape, dtype, 0.5, 2.0, "rms", affine)
    n = shape[-1]
    w = _params(n, dtype, affine, "rms")[0]
    eps = 1e-6 if affine else None                 # None: finfo(dtype).eps

    def call(x, out, nt):
        return fn.rms_norm(x, n, w, eps, out=out, num_threads=nt)
    _check_against_general(call, x, "rms_norm %s %s" % (shape, np.dtype(dtype).name))


def _running(c, dtype, key):
    rng = rng_for("running", c, key)
    return rng.normal(-1.0, 1.0, c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("affine", [False, True])
def test_large_batch_norm_eval_matches_general_path(shape, affine, dtype):
    x = _data(shape, dtype, -1.0, 2.0, "bn", affine)
    assert x.size >= PARALLEL_MIN_ELEMENTS
    c = shape[1]
    rm, rv = _running(c, dtype, "bn")
    w, b = _params(c, dtype, affine, "bn")
    eps = 1e-3 if affine else 1e-5
    stats_before = (rm.copy(), rv.copy())

    def call(x, out, nt):
        return fn.batch_norm(x, rm, rv, w, b, False, 0.1, eps, out=out, num_threads=nt)
    _check_against_general(call, x, "batch_norm %s %s" % (shape, np.dtype(dtype).name))
    assert_bitwise(rm, stats_before[0], "eval changed running_mean")
    assert_bitwise(rv, stats_before[1], "eval changed running_var")


@pytest.mark.parametrize("shape", [(32767,), (32768,), (4, 8191), (4, 8192), (8193, 4)],
                         ids=str)
def test_threshold_sizes_match_general_path(shape, dtype):
    """Just below and at the size where the fast path turns parallel."""
    x = _data(shape, dtype, 10.0, 1.0, "threshold")
    n = shape[-1]
    w, b = _params(n, dtype, True, "threshold")

    def call(x, out, nt):
        return fn.layer_norm(x, n, w, b, out=out, num_threads=nt)
    _check_against_general(call, x, "layer_norm %s" % (shape,))


# --- the fast path is really taken ------------------------------------------------------

def test_kernels_take_large_calls(dtype):
    kernels = _dispatch.kernels()
    x = _data((4, 256, 768), dtype, 5.0, 2.0, "direct")
    w, b = _params(768, dtype, True, "direct")
    for nt in THREADS:
        general = fn.layer_norm(x, 768, w, b, 1e-5, out=np.empty_like(x), num_threads=nt)
        y = kernels.rows_fast(x, 768, w, b, 1e-5, False, None, nt)
        assert y is not None and y is not x
        assert_bitwise(y, general, "rows_fast layer num_threads=%s" % nt)
        xi = x.copy()
        assert kernels.rows_fast(xi, (768,), w, None, None, True, xi, nt) is xi
        assert_bitwise(xi, fn.rms_norm(x, 768, w, out=np.empty_like(x), num_threads=nt),
                       "rows_fast rms in place num_threads=%s" % nt)

    xb = _data((8, 64, 28, 28), dtype, 1.0, 2.0, "direct bn")
    rm, rv = _running(64, dtype, "direct")
    wb, bb = _params(64, dtype, True, "direct bn")
    for nt in THREADS:
        general = fn.batch_norm(xb, rm, rv, wb, bb, out=np.empty_like(xb), num_threads=nt)
        y = kernels.batch_norm_eval_fast(xb, rm, rv, wb, bb, 1e-5, None, nt)
        assert y is not None and y is not xb
        assert_bitwise(y, general, "batch_norm_eval_fast num_threads=%s" % nt)
        xi = xb.copy()
        assert kernels.batch_norm_eval_fast(xi, rm, rv, None, None, 1e-5, xi, nt) is xi
        assert_bitwise(xi, fn.batch_norm(xb, rm, rv, out=np.empty_like(xb), num_threads=nt),
                       "batch_norm_eval_fast in place num_threads=%s" % nt)

    # still declined when large: a separate out buffer, non-contiguous x
    assert kernels.rows_fast(x, 768, w, b, 1e-5, False, np.empty_like(x), None) is None
    assert kernels.rows_fast(x[:, :, ::2], 384, None, None, 1e-5, False, None, None) is None
    assert kernels.batch_norm_eval_fast(xb, rm, rv, wb, bb, 1e-5, np.empty_like(xb),
                                        None) is None


def _channels_last(a):
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)


@pytest.mark.parametrize("shape", [(2, 64, 5, 7), (8, 48, 28, 28), (2, 24, 3, 4, 5), (3, 40, 50)],
                         ids=str)
def test_channels_last_batch_norm_eval_takes_the_fast_path(shape, dtype):
    """Channels-last x in eval mode: the fast path runs it as rows of channels, gives the
    general path's bits (which are NCHW's: test_rows_of_channels), keeps the layout, writes
    x's memory in place; a channels-last out buffer or another layout is declined."""
    kernels = _dispatch.kernels()
    x = _channels_last(_data(shape, dtype, 1.0, 2.0, "cl fast"))
    c = shape[1]
    rm, rv = _running(c, dtype, "cl fast")
    w, b = _params(c, dtype, True, "cl fast")
    x_before = x.copy(order="K")
    for nt in THREADS:
        tag = "%s num_threads=%s" % (shape, nt)
        # the general path (a separate channels-last out buffer is not a fast-path call)
        general = fn.batch_norm(x, rm, rv, w, b, out=np.empty_like(x), num_threads=nt)
        assert np.moveaxis(general, 1, -1).flags.c_contiguous, tag
        y = kernels.batch_norm_eval_fast(x, rm, rv, w, b, 1e-5, None, nt)
        assert y is not None and y is not x, tag
        assert_bitwise(np.ascontiguousarray(y), np.ascontiguousarray(general), tag)
        assert np.moveaxis(y, 1, -1).flags.c_contiguous, tag + ": layout lost"
        xi = x.copy(order="K")
        assert kernels.batch_norm_eval_fast(xi, rm, rv, w, b, 1e-5, xi, nt) is xi, tag
        assert_bitwise(np.ascontiguousarray(xi), np.ascontiguousarray(general),
                       tag + " in place")
    assert_bitwise(np.ascontiguousarray(x), np.ascontiguousarray(x_before), "input modified")
    assert kernels.batch_norm_eval_fast(x, rm, rv, w, b, 1e-5, np.empty_like(x), None) is None
    odd = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 0, -1)), -1, 0)   # N fastest
    assert not odd.flags.c_contiguous and not np.moveaxis(odd, 1, -1).flags.c_contiguous
    assert kernels.batch_norm_eval_fast(odd, rm, rv, w, b, 1e-5, None, None) is None


@pytest.mark.parametrize("nt", THREADS)
def test_large_two_dim_batch_norm_is_declined_but_correct(nt, dtype):
    """(N, C) input (inner == 1) with >= 32768 elements goes to the general path."""
    kernels = _dispatch.kernels()
    c = 512
    rm, rv = _running(c, dtype, "2d")
    w, b = _params(c, dtype, True, "2d")
    x = _data((256, c), dtype, -1.0, 2.0, "2d")
    assert kernels.batch_norm_eval_fast(x, rm, rv, w, b, 1e-5, None, nt) is None
    assert kernels.batch_norm_eval_fast(x, rm, rv, None, None, 1e-5, x, nt) is None
    x64 = x.astype(np.float64)
    ref = (x64 - rm.astype(np.float64)) / np.sqrt(rv.astype(np.float64) + 1e-5)
    ref = ref * w.astype(np.float64) + b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    y = fn.batch_norm(x, rm, rv, w, b, num_threads=nt)
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    assert_bitwise(y, fn.batch_norm(x, rm, rv, w, b, out=np.empty_like(x), num_threads=nt))
    xi = x.copy()
    assert fn.batch_norm(xi, rm, rv, w, b, out=xi, num_threads=nt) is xi
    assert_bitwise(xi, y, "in place")
    # the boundary: one element fewer is still taken by the fast path (serially)
    small = _data((7, 4681), dtype, -1.0, 2.0, "2d small")          # 32767 elements
    rs, vs = _running(4681, dtype, "2d small")
    ys = kernels.batch_norm_eval_fast(small, rs, vs, None, None, 1e-5, None, nt)
    assert ys is not None
    assert_bitwise(ys, fn.batch_norm(small, rs, vs, out=np.empty_like(small), num_threads=nt))
    assert kernels.batch_norm_eval_fast(_data((2, 16384), dtype, 0.0, 1.0, "2d edge"),
                                        rs[:1].repeat(16384), vs[:1].repeat(16384), None,
                                        None, 1e-5, None, nt) is None      # 32768 elements


def test_public_functions_use_the_fast_path_for_large_calls(monkeypatch):
    """fn.layer_norm / rms_norm / batch_norm return what the kernels' fast path returned (and
    out=np.empty_like(x) really is the general path the comparisons above rely on)."""
    kernels = _dispatch.kernels()
    returned = []

    def spy(name):
        real = getattr(kernels, name)

        def wrapper(*args):
            res = real(*args)
            returned.append((name, res))
            return res
        monkeypatch.setattr(kernels, name, wrapper)

    spy("rows_fast")
    spy("batch_norm_eval_fast")
    x = _data((64, 4096), np.float32, 1.0, 1.0, "spy")
    xb = _data((8, 64, 28, 28), np.float32, 1.0, 1.0, "spy bn")
    rm, rv = _running(64, np.float32, "spy")
    calls = [
        ("rows_fast", lambda out, nt: fn.layer_norm(x, 4096, out=out, num_threads=nt)),
        ("rows_fast", lambda out, nt: fn.rms_norm(x, 4096, out=out, num_threads=nt)),
        ("batch_norm_eval_fast",
         lambda out, nt: fn.batch_norm(xb, rm, rv, out=out, num_threads=nt)),
    ]
    for name, call in calls:
        for nt in (None, 2):
            del returned[:]
            y = call(None, nt)
            assert len(returned) == 1 and returned[0][0] == name
            assert returned[0][1] is y and y is not None, name
            del returned[:]
            out = np.empty_like(y)
            assert call(out, nt) is out
            # (tried by the public wrapper, then by the op: declined both times)
            assert returned and all(r == (name, None) for r in returned), \
                name + ": out= took the fast path"


@pytest.mark.parametrize("tiny", [True, False], ids=["tiny", "large"])
def test_fast_calls_skip_the_tensor_scan(monkeypatch, tiny):
    """Once torch is imported, the public functions look for tensors among the arguments
    (fastnorm._tensors); a call the fast path takes returns before that scan, a call it
    declines still gets it (a stand-in torch module: the scan only needs torch.Tensor)."""
    import sys
    import types
    from fastnorm import _tensors
    fake = types.ModuleType("torch")
    fake.Tensor = type("Tensor", (), {})
    monkeypatch.setitem(sys.modules, "torch", fake)
    scans = []
    real = _tensors._has_tensor
    monkeypatch.setattr(_tensors, "_has_tensor",
                        lambda values, t: scans.append(t) or real(values, t))
    x = _data((2, 8) if tiny else (64, 4096), np.float32, 1.0, 1.0, "scan")
    xb = _data((2, 8, 3, 3) if tiny else (8, 64, 28, 28), np.float32, 1.0, 1.0, "scan bn")
    c, cb = x.shape[1], xb.shape[1]
    rm, rv = _running(cb, np.float32, "scan")
    w, wb = np.ones(c, np.float32), np.ones(cb, np.float32)
    for data, call in ((x, lambda **kw: fn.layer_norm(x, c, w, **kw)),
                       (x, lambda **kw: fn.layer_norm(x, (c,), weight=w, bias=w, eps=1e-6, **kw)),
                       (x, lambda **kw: fn.rms_norm(x, c, w, **kw)),
                       (xb, lambda **kw: fn.batch_norm(xb, rm, rv, wb, training=False, **kw))):
        del scans[:]
        fast = call()
        assert scans == [], "a fast-path call scanned its arguments for tensors"
        general = call(out=np.empty_like(data))
        assert scans and all(t is fake.Tensor for t in scans)
        assert_bitwise(fast, general, "fast vs general path")
    # arguments that do not bind raise the op's own error
    with pytest.raises(TypeError, match=r"^layer_norm\(\) missing"):
        fn.layer_norm(x)
    with pytest.raises(TypeError, match=r"^rms_norm\(\) got an unexpected keyword argument"):
        fn.rms_norm(x, c, nonsense=1)


# --- concurrency and the GIL ------------------------------------------------------------

def test_concurrent_large_calls_give_the_serial_results():
    """4 Python threads run large fast-path calls at once (the GIL released): every result
    has the bits of the one computed serially beforehand."""
    nthreads, repeats = 4, 4
    jobs = []
    for i in range(nthreads):
        x = _data((64, 4096), np.float32, float(i), 1.0 + i, "concurrent", i)
        w, b = _params(4096, np.float32, i % 2 == 1, "concurrent", i)
        xb = _data((4, 32, 16, 16), np.float32, 1.0, 2.0, "concurrent bn", i)
        rm, rv = _running(32, np.float32, ("concurrent", i))
        nt = THREADS[i]
        jobs.append([
            (lambda x=x, w=w, b=b, nt=nt, out=None: fn.layer_norm(x, 4096, w, b, out=out,
                                                                   num_threads=nt), x),
            (lambda x=x, w=w, nt=nt, out=None: fn.rms_norm(x, 4096, w, out=out,
                                                            num_threads=nt), x),
            (lambda xb=xb, rm=rm, rv=rv, nt=nt, out=None: fn.batch_norm(
                xb, rm, rv, out=out, num_threads=nt), xb),
        ])
    expected = [[call() for call, _ in job] for job in jobs]   # serial reference
    for job, exp in zip(jobs, expected):
        assert_bitwise(job[0][0](out=np.empty_like(job[0][1])), exp[0], "reference")

    mismatches = []

    def worker(k):
        for r in range(repeats):
            for j, (call, x) in enumerate(jobs[k]):
                if r % 2:
                    y = x.copy()
                    ok = call(out=y) is y
                else:
                    y = call()
                    ok = y is not x
                ok = ok and np.array_equal(y.view(np.uint32), expected[k][j].view(np.uint32))
                if not ok:
                    mismatches.append((k, r, j))

    run_in_threads(worker, nthreads, 60)
    assert not mismatches, "results differ from the serial ones (thread, repeat, op): %s" % (
        mismatches[:10],)


def test_large_fast_path_calls_release_the_gil():
    """Another Python thread runs while a large fast-path call computes. The check does not
    time anything (_helpers.calls_until_another_thread_ran): it holds on a machine whose
    cores are all busy, also for the in-place call that runs on every core."""
    x = _data((512, 4096), np.float32, 1.0, 1.0, "gil")    # 2M values, a few ms per call
    xb = _data((8, 64, 64, 64), np.float32, 1.0, 1.0, "gil bn")
    rm, rv = _running(64, np.float32, "gil")
    xi = x.copy()
    calls = {
        "layer_norm": lambda: fn.layer_norm(x, 4096, num_threads=1),
        "layer_norm in place": lambda: fn.layer_norm(xi, 4096, out=xi),
        "rms_norm": lambda: fn.rms_norm(x, 4096, num_threads=1),
        "batch_norm": lambda: fn.batch_norm(xb, rm, rv, num_threads=1),
    }
    # the detector fails on calls that hold the GIL: a C loop of a few ms, many tiny
    # (serial, GIL-holding) fast-path calls
    tiny = x[:1, :1000].copy()
    assert calls_until_another_thread_ran(lambda: sum(range(300000)), tries=10) == 0
    assert calls_until_another_thread_ran(
        lambda: [fn.layer_norm(tiny, 1000) for _ in range(200)], tries=10) == 0
    for name, call in calls.items():
        call()                                               # warm up (page faults)
        assert calls_until_another_thread_ran(call, tries=1000) > 0, (
            "%s: no other Python thread ran during 1000 large fast-path calls: the GIL is "
            "held" % name)


# --- correctness against float64 NumPy formulas ----------------------------------------

def _tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-11


@pytest.mark.parametrize("shape", [(4, 256, 768), (3, 40000)], ids=str)
def test_large_fast_path_matches_float64_formulas(shape, dtype):
    n = shape[-1]
    x = _data(shape, dtype, 50.0, 3.0, "formula")
    w, b = _params(n, dtype, True, "formula")
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    eps = 1e-2                      # large enough that dropping it would show
    tol = _tol(dtype)

    mean = x64.mean(axis=-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=-1, keepdims=True)
    ref_ln = (x64 - mean) / np.sqrt(var + eps) * w64 + b64
    ref_ln_plain = (x64 - mean) / np.sqrt(var + 1e-5)
    ms = (x64 * x64).mean(axis=-1, keepdims=True)
    ref_rms = x64 / np.sqrt(ms + eps) * w64
    ref_rms_default = x64 / np.sqrt(ms + float(np.finfo(dtype).eps))

    for nt in (None, 2):
        np.testing.assert_allclose(fn.layer_norm(x, n, w, b, eps, num_threads=nt), ref_ln,
                                   rtol=tol, atol=tol)
        np.testing.assert_allclose(fn.layer_norm(x, n, num_threads=nt), ref_ln_plain,
                                   rtol=tol, atol=tol)
        np.testing.assert_allclose(fn.rms_norm(x, n, w, eps, num_threads=nt), ref_rms,
                                   rtol=tol, atol=tol)
        np.testing.assert_allclose(fn.rms_norm(x, n, num_threads=nt), ref_rms_default,
                                   rtol=tol, atol=tol)
        xi = x.copy()
        fn.layer_norm(xi, n, w, b, eps, out=xi, num_threads=nt)
        np.testing.assert_allclose(xi, ref_ln, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(8, 64, 28, 28), (2, 3, 100, 120)], ids=str)
def test_large_batch_norm_eval_matches_float64_formula(shape, dtype):
    c = shape[1]
    x = _data(shape, dtype, 20.0, 3.0, "bn formula")
    rm, rv = _running(c, dtype, "bn formula")
    rm = rm + dtype(20.0)
    w, b = _params(c, dtype, True, "bn formula")
    eps = 1e-2
    cs = (1, c) + (1,) * (len(shape) - 2)
    f64 = [a.astype(np.float64).reshape(cs) for a in (rm, rv, w, b)]
    ref = (x.astype(np.float64) - f64[0]) / np.sqrt(f64[1] + eps) * f64[2] + f64[3]
    ref_plain = (x.astype(np.float64) - f64[0]) / np.sqrt(f64[1] + 1e-5)
    tol = _tol(dtype)
    for nt in (None, 2):
        np.testing.assert_allclose(fn.batch_norm(x, rm, rv, w, b, eps=eps, num_threads=nt),
                                   ref, rtol=tol, atol=tol)
        xi = x.copy()
        assert fn.batch_norm(xi, rm, rv, out=xi, num_threads=nt) is xi
        np.testing.assert_allclose(xi, ref_plain, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", [fn.layer_norm, fn.rms_norm])
def test_zero_dim_array_gets_the_general_error(op):
    x = np.array(1.0, np.float32)      # an ndarray of size 1 and no last dim
    assert _dispatch.kernels().rows_fast(x, 1, None, None, 1e-5, False, None, None) is None
    with pytest.raises(ValueError, match="x must have at least 1 dimension"):
        op(x, 1)
