"""fastnorm.dask: moments, accumulate and the normalizations on dask arrays.

Every computation runs on three schedulers: synchronous, threaded, and a 2-worker
dask.distributed LocalCluster of processes (started here on loopback, one per module), which
pickles every block result and Moments for real. References: fastnorm's in-memory functions
on the computed array, float64 NumPy, and dask's own mean/var.
"""
import pickle
import subprocess
import sys

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="fastnorm.dask needs dask (the test extra)")
da = pytest.importorskip("dask.array", reason="fastnorm.dask needs dask[array]")
distributed = pytest.importorskip("distributed", reason="the cluster tests need distributed")

import fastnorm as fn  # noqa: E402
import fastnorm.dask as fnd  # noqa: E402
from fastnorm import _dask_blocks  # noqa: E402
from _helpers import rng_for  # noqa: E402

SCHEDULERS = ("sync", "threads", "cluster")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c
    cluster.close()


@pytest.fixture(params=SCHEDULERS)
def scheduler(request):
    """Runs the test with dask's scheduler set to the parameter (the cluster: its Client)."""
    name = request.param
    target = request.getfixturevalue("client") if name == "cluster" else (
        "synchronous" if name == "sync" else "threads")
    with dask.config.set(scheduler=target):
        yield name


def _data(shape, dtype=np.float64, *key, loc=3.0, scale=2.0):
    rng = rng_for("dask", shape, np.dtype(dtype).name, *key)
    return (rng.standard_normal(shape) * scale + loc).astype(dtype)


# ---------------------------------------------------------------------------------------
# moments

# (shape, chunks, axis, split_every): irregular chunkings, chunks of one element, several
# reduced axes, a dict split_every
MOMENT_CASES = [
    ((37, 6, 5, 7), ((10, 3, 24), (2, 4), (5,), (3, 4)), (0, 2, 3), 2),
    ((37, 6, 5, 7), ((10, 3, 24), (2, 4), (5,), (3, 4)), None, 3),
    ((37, 6, 5, 7), ((1, 1, 35), (6,), (2, 2, 1), (7,)), 1, 4),
    ((101, 13), ((1, 50, 20, 30), (13,)), 0, None),
    ((101, 13), ((101,), (5, 1, 7)), -1, {1: 2}),
    ((64, 9), ((8,) * 8, (4, 5)), (0, 1), 16),
]
MOMENT_IDS = [f"{c[0]}-ax{c[2]}-se{c[3]}" for c in MOMENT_CASES]


@pytest.mark.parametrize("shape, chunks, axis, split_every", MOMENT_CASES, ids=MOMENT_IDS)
def test_moments_match_in_memory(scheduler, shape, chunks, axis, split_every):
    x = _data(shape, np.float64, "moments")
    dx = da.from_array(x, chunks=chunks)
    for ddof, keepdims in ((0, False), (1, True)):
        mean, var = fnd.moments(dx, axis, ddof=ddof, keepdims=keepdims,
                                split_every=split_every)
        assert isinstance(mean, da.Array) and isinstance(var, da.Array)
        got_mean, got_var = dask.compute(mean, var)
        ref_mean, ref_var = fn.moments(x, axis, ddof=ddof, keepdims=keepdims)
        assert got_mean.shape == ref_mean.shape == mean.shape
        assert got_var.dtype == ref_var.dtype == np.float64
        np.testing.assert_allclose(got_mean, ref_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_var, ref_var, rtol=1e-12, atol=1e-12)
        # independent references: float64 NumPy, and dask's own (two-pass) reductions
        np.testing.assert_allclose(got_var, np.var(x, axis=axis, ddof=ddof,
                                                   keepdims=keepdims), rtol=1e-12)
        dask_mean, dask_var = dask.compute(dx.mean(axis=axis, keepdims=keepdims),
                                           dx.var(axis=axis, ddof=ddof, keepdims=keepdims))
        np.testing.assert_allclose(got_mean, dask_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_var, dask_var, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.int16])
def test_moments_dtypes(scheduler, dtype):
    """float32/float16 results in the data's dtype (dtype=np.float64 keeps the
    accumulator's precision); integer data is exact, float64 results."""
    rng = rng_for("dtypes", np.dtype(dtype).name)
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=(30, 3, 11), endpoint=True).astype(dtype)
    else:
        x = _data((30, 3, 11), dtype, "dtypes")
    dx = da.from_array(x, chunks=((7, 23), (1, 2), (11,)))
    mean, var = dask.compute(*fnd.moments(dx, axis=(0, 2)))
    expected = np.float64 if np.dtype(dtype).kind in "ui" else dtype
    assert mean.dtype == var.dtype == expected
    x64 = x.astype(np.float64)
    mean64, var64 = dask.compute(*fnd.moments(dx, axis=(0, 2), dtype=np.float64))
    np.testing.assert_allclose(mean64, x64.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var64, x64.var(axis=(0, 2)), rtol=1e-12)
    if np.dtype(dtype).kind == "f":
        ref = fn.moments(x, axis=(0, 2))
        np.testing.assert_allclose(mean, ref[0], rtol=1e-6)
        np.testing.assert_allclose(var, ref[1], rtol=1e-6)


def test_float32_ill_conditioned_variance(scheduler, record_property):
    """float32 data with mean 1e4 and std 0.01: the variance within 1e-6 (relative) of the
    float64 one. dask's own var, beside it, accumulates float32 blocks in float32."""
    rng = rng_for("offset")
    x = (1e4 + 0.01 * rng.standard_normal((64, 4, 32, 32))).astype(np.float32)
    dx = da.from_array(x, chunks=(16, 4, 32, 32))
    axis = (0, 2, 3)
    ref = x.astype(np.float64).var(axis=axis)
    got = fnd.moments(dx, axis)[1].compute()
    ours = float(np.max(np.abs(got.astype(np.float64) - ref) / ref))
    theirs = float(np.max(np.abs(dx.var(axis=axis).compute().astype(np.float64) - ref) / ref))
    record_property("fastnorm_var_relative_error", ours)
    record_property("dask_var_relative_error", theirs)
    print(f"\nvariance relative error at mean 1e4, std 0.01, float32: fastnorm.dask "
          f"{ours:.2e}, dask {theirs:.2e}")
    assert ours < 1e-6, f"fastnorm.dask float32 variance off by {ours:.2e} (dask: {theirs:.2e})"


def test_moments_is_lazy_and_one_pass():
    """moments builds a graph (no computing at call time) in which mean and var share one
    reduction: one statistics task per block of x."""
    calls = []

    def counted(block):
        calls.append(block.shape)
        return block

    x = _data((20, 6), np.float64, "lazy")
    dx = da.from_array(x, chunks=(5, 3)).map_blocks(counted, dtype=np.float64)
    mean, var = fnd.moments(dx, axis=0)
    assert calls == [] or all(0 in shape for shape in calls)     # at most meta calls
    graph = {**dict(mean.__dask_graph__()), **dict(var.__dask_graph__())}
    chunk_tasks = [k for k in graph if isinstance(k, tuple)
                   and str(k[0]).startswith("fastnorm-moments") and "aggregate" not in k[0]
                   and "partial" not in k[0]]
    assert len(chunk_tasks) == dx.npartitions
    calls.clear()
    with dask.config.set(scheduler="synchronous"):
        dask.compute(mean, var)
    assert len([s for s in calls if 0 not in s]) == dx.npartitions      # each block read once


def test_moments_unknown_chunks_along_the_reduced_axis(scheduler):
    x = _data((40, 3), np.float64, "unknown")
    dx = da.from_array(x, chunks=(7, 3))
    picked = dx[dx[:, 0] > 2.0]            # unknown chunk sizes along axis 0
    assert np.isnan(picked.shape[0])
    mean, var = dask.compute(*fnd.moments(picked, axis=0))
    ref = fn.moments(x[x[:, 0] > 2.0], axis=0)
    np.testing.assert_allclose(mean, ref[0], rtol=1e-12)
    np.testing.assert_allclose(var, ref[1], rtol=1e-12)
    with pytest.raises(ValueError, match=r"x has unknown chunk sizes along axis 0"):
        fnd.moments(picked, axis=1)


def test_task_threads_default_one_and_configurable(monkeypatch):
    """Kernels inside tasks run with one thread unless dask's config says otherwise."""
    seen = []
    original = _dask_blocks.raw_moments

    def recording(x, axes, num_threads):
        seen.append(num_threads)
        return original(x, axes, num_threads)

    monkeypatch.setattr(_dask_blocks, "raw_moments", recording)
    dx = da.from_array(_data((8, 4), np.float64, "threads"), chunks=4)
    with dask.config.set(scheduler="synchronous"):
        fnd.moments(dx)[1].compute()
        assert seen and set(seen) == {1}
        seen.clear()
        with dask.config.set({"fastnorm.task-threads": 2}):
            var = fnd.moments(dx)[1]
        var.compute()
        assert seen and set(seen) == {2}


# ---------------------------------------------------------------------------------------
# accumulate, Moments pickling and tokenization

@pytest.mark.parametrize("axis", [(0, 2), None, -1])
def test_accumulate(scheduler, axis):
    x = _data((33, 4, 9), np.float64, "acc", str(axis))
    chunks = ((3, 10, 20), (1, 3), (4, 5))
    acc = fnd.accumulate(da.from_array(x, chunks=chunks), axis, split_every=2)
    assert isinstance(acc, fn.Moments) and acc.axis == axis
    ref = fn.Moments(axis).update(x)
    assert acc.count == ref.count
    np.testing.assert_allclose(acc.mean, ref.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.var(), ref.var(), rtol=1e-12)
    np.testing.assert_allclose(acc.var(ddof=1), np.var(x, axis=axis, ddof=1), rtol=1e-12)
    # mergeable with a second array's accumulator and with in-memory batches
    split_axis = 0 if axis != -1 else 2
    y = _data((21, 4, 9), np.float64, "acc-more") if split_axis == 0 else \
        _data((33, 4, 5), np.float64, "acc-more")
    both = acc + fnd.accumulate(da.from_array(y, chunks=7), axis)
    whole = np.concatenate([x, y], axis=split_axis)
    np.testing.assert_allclose(both.var(), np.var(whole, axis=axis), rtol=1e-12)
    acc.update(y)
    np.testing.assert_allclose(acc.mean, np.mean(whole, axis=axis), rtol=1e-12)


def test_moments_pickle_is_compact_plain_state():
    acc = fn.Moments(axis=(0, 2)).update(_data((50, 3, 8), np.float64, "pickle"))
    state = acc.__getstate__()
    assert all(isinstance(v, (int, tuple, type(None), np.ndarray)) for v in state)
    arrays = [v for v in state if isinstance(v, np.ndarray)]
    assert len(arrays) == 3 and all(a.dtype == np.float64 and a.flags.c_contiguous
                                    for a in arrays)
    blob = pickle.dumps(acc, protocol=pickle.HIGHEST_PROTOCOL)
    # three arrays of 3 float64 values and a few ints: a few hundred bytes
    assert len(blob) < 500, len(blob)
    assert b"__dict__" not in blob
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.mean, acc.mean)
    np.testing.assert_array_equal(clone.var(ddof=1), acc.var(ddof=1))
    assert clone.count == acc.count and clone.axis == acc.axis
    whole = fn.Moments().update(_data((7, 2), np.float64, "pickle-0d"))   # 0-d state
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        clone = pickle.loads(pickle.dumps(whole, protocol=protocol))
        assert clone.mean.shape == () and clone.var() == whole.var()
    empty = pickle.loads(pickle.dumps(fn.Moments(1)))
    assert empty.count == 0 and empty.axis == 1


def test_moments_tokenize_deterministic(client):
    from dask.base import tokenize
    x = _data((20, 3), np.float64, "token")
    acc = fn.Moments(0).update(x)
    token = tokenize(acc)
    assert token == tokenize(acc.copy()) == tokenize(pickle.loads(pickle.dumps(acc)))
    assert token == tokenize(fn.Moments(0).update(x))        # equal state, equal token
    # the same token in a worker process, after pickling
    assert client.submit(tokenize, acc, pure=False).result() == token
    assert tokenize(fn.Moments(0).update(x[:19])) != token
    assert tokenize(fn.Moments(-2).update(x)) != token
    assert tokenize(fn.Moments(0)) == tokenize(fn.Moments(0)) != tokenize(fn.Moments(1))


def test_moments_travel_through_the_cluster(client):
    """Accumulators updated on the workers and merged there equal one local pass."""
    x = _data((40, 5), np.float64, "travel")
    parts = [client.submit(lambda b: fn.Moments(0).update(b), part, pure=False)
             for part in np.array_split(x, 4)]
    merged = client.submit(lambda *ms: sum(ms[1:], ms[0]), *parts).result()
    np.testing.assert_allclose(merged.var(), np.var(x, axis=0), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# normalizations

X_SHAPE = (6, 8, 5, 7)
# chunkings where every group of the op lies in one block ("aligned") and where groups
# span blocks ("split")
CHUNKS = {
    "batch_norm": {"aligned": ((2, 4), (3, 5), (5,), (7,)),
                   "split": ((2, 4), (3, 5), (2, 3), (4, 3))},
    "instance_norm": {"aligned": ((1, 5), (3, 5), (5,), (7,)),
                      "split": ((6,), (8,), (2, 3), (7,))},
    "group_norm": {"aligned": ((2, 4), (4, 4), (5,), (7,)),
                   "split": ((3, 3), (3, 5), (5,), (2, 5))},
    "layer_norm": {"aligned": ((2, 4), (1, 7), (5,), (7,)),
                   "split": ((6,), (8,), (5,), (3, 4))},
    "rms_norm": {"aligned": ((2, 4), (5, 3), (2, 3), (7,)),
                 "split": ((6,), (8,), (2, 3), (7,))},
    "channel_layer_norm": {"aligned": ((2, 4), (8,), (2, 3), (7,)),
                           "split": ((6,), (3, 5), (5,), (3, 4))},
}


def _params(shape, *key):
    rng = rng_for("params", shape, *key)
    return rng.standard_normal(shape) * 0.5 + 1.0, rng.standard_normal(shape)


def _calls(x):
    """(name, fastnorm.dask call, in-memory call, running stats touched) per case."""
    c = x.shape[1]
    w, b = _params((c,), "c")
    lw, lb = _params(x.shape[-2:], "ln")
    rm0, rv0 = _params((c,), "running")
    rv0 = np.abs(rv0) + 0.5
    return {
        "batch_norm-train": ("batch_norm", lambda m, xx, rm, rv: m.batch_norm(
            xx, rm, rv, w, b, training=True, momentum=0.3), (rm0, rv0)),
        "batch_norm-train-no-running": ("batch_norm", lambda m, xx, rm, rv: m.batch_norm(
            xx, None, None, w, b, training=True), None),
        "batch_norm-eval": ("batch_norm", lambda m, xx, rm, rv: m.batch_norm(
            xx, rm, rv, w, b), (rm0, rv0)),
        "instance_norm": ("instance_norm", lambda m, xx, rm, rv: m.instance_norm(
            xx, None, None, w, b), None),
        "instance_norm-running": ("instance_norm", lambda m, xx, rm, rv: m.instance_norm(
            xx, rm, rv, w, b, momentum=0.2), (rm0, rv0)),
        "instance_norm-eval": ("instance_norm", lambda m, xx, rm, rv: m.instance_norm(
            xx, rm, rv, w, b, use_input_stats=False), (rm0, rv0)),
        "group_norm": ("group_norm", lambda m, xx, rm, rv: m.group_norm(xx, 4, w, b),
                       None),
        "layer_norm": ("layer_norm", lambda m, xx, rm, rv: m.layer_norm(
            xx, xx.shape[-2:], lw, lb), None),
        "rms_norm": ("rms_norm", lambda m, xx, rm, rv: m.rms_norm(xx, xx.shape[-2:], lw),
                     None),
        "channel_layer_norm": ("channel_layer_norm", lambda m, xx, rm, rv:
                               m.channel_layer_norm(xx, w, b), None),
    }


CASE_NAMES = list(_calls(np.zeros(X_SHAPE)))


@pytest.mark.parametrize("layout", ["aligned", "split"])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_normalization_matches_in_memory(scheduler, case, layout):
    x = _data(X_SHAPE, np.float64, "norm", case, loc=5.0)
    op, call, running = _calls(x)[case]
    dx = da.from_array(x, chunks=CHUNKS[op][layout])
    rm_d, rv_d = (None, None) if running is None else (running[0].copy(), running[1].copy())
    rm_n, rv_n = (None, None) if running is None else (running[0].copy(), running[1].copy())
    y = call(fnd, dx, rm_d, rv_d)
    assert isinstance(y, da.Array) and y.chunks == dx.chunks and y.dtype == x.dtype
    if running is not None:      # updated at call time, before anything is computed
        ref_y = call(fn, x, rm_n, rv_n)
        np.testing.assert_allclose(rm_d, rm_n, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(rv_d, rv_n, rtol=1e-12, atol=1e-12)
    else:
        ref_y = call(fn, x, None, None)
    got = y.compute()
    np.testing.assert_allclose(got, ref_y, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("case", ["batch_norm-train", "instance_norm", "group_norm",
                                  "layer_norm", "rms_norm", "channel_layer_norm"])
@pytest.mark.parametrize("layout", ["aligned", "split"])
def test_normalization_float32(case, layout):
    """float32 data far from zero: the same accuracy as in-memory fastnorm."""
    x = _data(X_SHAPE, np.float32, "norm32", case, loc=300.0, scale=0.5)
    op, call, running = _calls(x)[case]
    dx = da.from_array(x, chunks=CHUNKS[op][layout])
    rm, rv = (None, None) if running is None else (running[0].copy(), running[1].copy())
    with dask.config.set(scheduler="synchronous"):
        got = call(fnd, dx, rm, rv).compute()
    assert got.dtype == np.float32
    ref = call(fn, x.astype(np.float64), None if rm is None else running[0].copy(),
               None if rv is None else running[1].copy())
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * max(1.0, np.abs(ref).max()))


def test_aligned_groups_take_no_statistics_pass(monkeypatch):
    """Groups inside blocks: nothing is computed at call time. Groups across blocks: one
    statistics pass at call time, then a blockwise apply."""
    computed = []
    original = fnd._computed_raw
    monkeypatch.setattr(fnd, "_computed_raw",
                        lambda *a, **k: computed.append(a[1]) or original(*a, **k))
    x = da.from_array(_data(X_SHAPE, np.float64, "passes"), chunks=CHUNKS["group_norm"]
                      ["aligned"])
    fnd.group_norm(x, 4)
    fnd.instance_norm(x)
    fnd.layer_norm(x, X_SHAPE[-2:])
    assert computed == []
    fnd.layer_norm(x, X_SHAPE[-1:])
    assert computed == []
    y = fnd.channel_layer_norm(x)           # C in two blocks: statistics first
    assert computed == [(1,)]
    graph = dict(y.__dask_graph__())
    assert not any(str(k[0] if isinstance(k, tuple) else k).startswith("fastnorm-moments")
                   for k in graph), "the apply must not hold the statistics reduction"


# ---------------------------------------------------------------------------------------
# errors

def test_errors_name_the_argument():
    dx = da.from_array(_data((6, 4, 3), np.float64, "err"), chunks=2)
    with pytest.raises(TypeError, match=r"x must be a dask.array.Array, got ndarray"):
        fnd.moments(np.zeros((3, 3)))
    with pytest.raises(TypeError, match=r"x has dtype bool"):
        fnd.moments(dx > 0)
    with pytest.raises(ValueError, match=r"split_every must be >= 2"):
        fnd.moments(dx, split_every=1)
    for op, args in (("batch_norm", ()), ("instance_norm", ()), ("group_norm", (2,)),
                     ("layer_norm", (3,)), ("rms_norm", (3,)), ("channel_layer_norm", ())):
        with pytest.raises(TypeError, match=r"x has dtype int32"):
            getattr(fnd, op)(dx.astype(np.int32), *args)
        with pytest.raises(TypeError, match=r"x has dtype uint8"):
            getattr(fnd, op)(dx.astype(np.uint8), *args)
    unknown = dx[dx[:, 0, 0] > 0]
    for op, args in (("batch_norm", ()), ("layer_norm", (3,)), ("group_norm", (2,))):
        with pytest.raises(ValueError, match=r"x has unknown chunk sizes along axis 0"):
            getattr(fnd, op)(unknown, *args)
    with pytest.raises(ValueError, match=r"num_groups=3 must divide"):
        fnd.group_norm(dx, 3)


def test_failed_training_call_leaves_running_stats_unchanged():
    dx = da.from_array(_data((6, 4, 3), np.float64, "unchanged"), chunks=2)
    rm, rv = np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        fnd.batch_norm(dx, rm, rv, np.ones(3), training=True)
    with pytest.raises(ValueError, match=r"running_var must have shape"):
        fnd.batch_norm(dx, rm, np.ones(5), training=True)
    with pytest.raises(ValueError, match=r"running_var is updated in place"):
        readonly = np.ones(4)
        readonly.flags.writeable = False
        fnd.instance_norm(dx, rm, readonly)
    np.testing.assert_array_equal(rm, 0.0)
    np.testing.assert_array_equal(rv, 1.0)


def test_importing_fastnorm_imports_no_optional_library():
    code = ("import sys, fastnorm; bad = [m for m in ('dask', 'distributed', 'PIL', 'tqdm', "
            "'zarr') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_example_runs(tmp_path):
    """The README's example ("Beyond one machine") runs as written, on its own cluster."""
    import pathlib
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Beyond one machine"):]
    code = section[section.index("```python\n") + 10:]
    code = code[:code.index("```")]
    assert "LocalCluster" in code and "fnd.moments" in code
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4194304" in result.stdout          # acc.count: 256 * 128 * 128 per channel


# ---------------------------------------------------------------------------------------
# fastnorm's in-memory functions refuse dask arrays instead of gathering them into memory

IN_MEMORY_CALLS = {
    "moments": lambda x: fn.moments(x, axis=0),
    "Moments.update": lambda x: fn.Moments(axis=0).update(x),
    "batch_norm": lambda x: fn.batch_norm(x, training=True),
    "instance_norm": lambda x: fn.instance_norm(x),
    "group_norm": lambda x: fn.group_norm(x, 1),
    "layer_norm": lambda x: fn.layer_norm(x, 2),
    "rms_norm": lambda x: fn.rms_norm(x, 2),
    "channel_layer_norm": lambda x: fn.channel_layer_norm(x),
}


@pytest.mark.parametrize("name", list(IN_MEMORY_CALLS))
def test_in_memory_functions_refuse_dask_arrays(name, monkeypatch):
    """A dask array raises a TypeError that names the argument and fastnorm.dask, and is
    never computed (no conversion to one NumPy array)."""
    x = da.from_array(np.arange(24.0).reshape(4, 3, 2), chunks=2)
    monkeypatch.setattr(type(x), "__array__", lambda *a, **k: pytest.fail("x was computed"))
    with pytest.raises(TypeError) as info:
        IN_MEMORY_CALLS[name](x)
    message = str(info.value)
    argument = "batch" if name == "Moments.update" else "x"
    assert message.startswith(f"{argument} is a dask array"), message
    assert "fastnorm.dask" in message
    if name in ("moments", "Moments.update"):
        assert "fastnorm.dask.moments" in message and "fastnorm.dask.accumulate" in message
