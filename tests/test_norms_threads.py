"""Thread-count independence and thread safety of the normalizations.

API.md: results are bit-identical for every thread count; the GIL is released and
concurrent calls from several Python threads are safe.
"""

import concurrent.futures

import numpy as np
import pytest

import fastnorm
from _helpers import ref_layer_norm, rng_for
from _ops import OPS

M = 1 << 21  # ~2 million elements: large enough to run in parallel


def _case(name, dtype, shape, arg=None, op=None):
    """(name, record, its shape argument, dtype, shape); arg: num_groups, or the number of
    trailing dims layer_norm / rms_norm normalize (1 by default)."""
    return name, OPS[op or name], arg, dtype, shape


CASES = [
    _case("batch_norm_train", np.float32, (32, 16, 64, 64)),
    _case("batch_norm_train", np.float32, (M // 4, 4)),
    _case("batch_norm_train", np.float64, (4, 2, M // 8)),
    _case("batch_norm_eval", np.float32, (32, 16, 64, 64)),
    _case("instance_norm", np.float32, (4, 8, 256, 256)),
    _case("instance_norm_stats", np.float64, (1, 2, M // 2)),
    _case("group_norm", np.float32, (2, 32, 128, 256), 8),
    _case("group_norm_1", np.float32, (1, 4, 512, 1024), 1, "group_norm"),
    _case("layer_norm", np.float32, (2048, 1024)),
    _case("layer_norm", np.float64, (1, M)),
    _case("layer_norm_2d", np.float32, (2, 1024, 1024), 2, "layer_norm"),
    _case("rms_norm", np.float32, (2048, 1024)),
    _case("rms_norm", np.float32, (1, M)),
    _case("channel_layer_norm", np.float32, (8, 64, 64, 64)),
    _case("channel_layer_norm", np.float64, (M // 8, 8)),
]


def _run(op, arg, x, nt):
    """Returns the list of arrays the call produces (output, returned statistics where the
    op has them, updated running stats). Per-channel parameters; none for layer_norm and
    rms_norm."""
    C = x.shape[1]
    w = np.linspace(0.5, 1.5, C).astype(x.dtype)
    b = np.linspace(-1, 1, C).astype(x.dtype)
    rm, rv = np.linspace(-1, 1, C).astype(x.dtype), np.linspace(0.5, 2, C).astype(x.dtype)
    if op.per_element:
        w, b = None, None
    running = (rm, rv) if op.running else None
    kw = dict(return_stats=True) if op.return_stats else {}
    return op.outputs(op.call(x, w, b, running, arg, num_threads=nt, **kw), running)


@pytest.mark.parametrize("name,op,arg,dtype,shape", CASES,
                         ids=["%s-%s-%s" % (n, np.dtype(d).name, s) for n, _, _, d, s in CASES])
def test_bit_identical_for_every_thread_count(name, op, arg, dtype, shape):
    x = (rng_for("nthreads", name, shape).standard_normal(shape, dtype=np.float32) * 3
         + 10).astype(dtype)
    base = [a.tobytes() for a in _run(op, arg, x, 1)]
    for nt in (2, 3, None):
        got = [a.tobytes() for a in _run(op, arg, x, nt)]
        assert len(got) == len(base)
        for i, (g, r) in enumerate(zip(got, base)):
            assert g == r, "%s: result %d differs between num_threads=1 and %s" % (name, i, nt)


def test_concurrent_calls_from_python_threads():
    rng = rng_for("concurrent")
    xs = [(rng.standard_normal((256, 1024)) * (i + 1) + i).astype(np.float32) for i in range(8)]
    serial = [fastnorm.layer_norm(x, 1024) for x in xs]

    def work(i):
        res = []
        for _ in range(5):
            res.append(fastnorm.layer_norm(xs[i], 1024, num_threads=2))
            fastnorm.moments(xs[i], axis=0, num_threads=2)
        return res

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(work, range(len(xs))))
    for i, res in enumerate(results):
        for y in res:
            assert y.tobytes() == serial[i].tobytes()
        ref = ref_layer_norm(xs[i], 1024)[0]
        assert np.max(np.abs(serial[i] - ref)) < 1e-5


def test_threadpoolctl_limit_gives_identical_results():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x = rng_for("tpctl").standard_normal((1024, 2048)).astype(np.float32)
    y_default = fastnorm.layer_norm(x, 2048)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        y_limited = fastnorm.layer_norm(x, 2048)
    assert y_default.tobytes() == y_limited.tobytes()


def _child_work(x, conn):
    y = fastnorm.layer_norm(x, x.shape[-1], num_threads=2)
    m, v = fastnorm.moments(x, axis=0, num_threads=2)
    conn.send((y.tobytes(), np.asarray(v).tobytes()))
    conn.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_forked_child_after_parallel_region_does_not_hang():
    """DESIGN.md section 4: libgomp is not fork-safe; a child forked after the parent ran a
    parallel region must still complete its calls (and give the same bits)."""
    import multiprocessing as mp

    x = rng_for("fork").standard_normal((2048, 1024)).astype(np.float32)
    y_parent = fastnorm.layer_norm(x, 1024, num_threads=2)  # parent runs a parallel region
    _, v_parent = fastnorm.moments(x, axis=0, num_threads=2)
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_work, args=(x, send))
    proc.start()
    send.close()
    try:
        got = recv.recv() if recv.poll(120) else None
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert got is not None, "forked child did not finish (deadlock in the OpenMP runtime?)"
    assert proc.exitcode == 0
    assert got[0] == y_parent.tobytes()
    assert got[1] == np.asarray(v_parent).tobytes()


@pytest.mark.parametrize("in_place", [False, True])
def test_rms_norm_of_inf_in_few_large_groups(in_place):
    """Few large groups run chunk-parallel statistics, then a block-parallel apply. An
    infinite value makes RMSNorm re-read its group for mean(x^2): that must happen before
    any block of the group is written (in place, a block written first would turn the
    re-read into NaN for the others)."""
    rng = rng_for("rms inf few groups")
    x = rng.standard_normal((2, 1 << 17)).astype(np.float32)
    x[0, 0] = np.inf
    x[1, 70000] = -np.inf
    expected = np.where(np.isinf(x), np.nan, 0.0).astype(np.float32)
    for nt in (1, 2, 3):
        y = x.copy()
        got = fastnorm.rms_norm(y, x.shape[-1], out=y if in_place else None, num_threads=nt)
        np.testing.assert_array_equal(got, expected)
