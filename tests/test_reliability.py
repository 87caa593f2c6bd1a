"""Reliability under load, with faulty data and with hostile arguments (issue 5).

* concurrency: many Python threads calling every op (and moments/Moments) at once give the
  serial results to the bit, in every out mode; the kernels release the GIL;
* determinism: identical bits for num_threads 1, 2, 3, 4 and 8 (more threads than cores) on
  every parallel strategy (many groups, few large groups, column blocks);
* non-finite data: NaN/Inf stay in their own group (also under the chunk-parallel paths), a
  NaN parameter stays in its channel, constant groups are exact under every strategy;
* hostile arguments that tests/test_validation_*.py do not already cover: every error names
  the argument and leaves every array handed in unchanged.

Thread counts past the machine's limits and the fork/PyTorch scenarios are in
test_reliability_processes.py; buffers of more than 2**31 elements in
test_reliability_huge.py.
"""

import re

import numpy as np
import pytest

import fastnorm
from _helpers import (arrays_in, calls_until_another_thread_ran, ref_batch_norm, rng_for,
                      run_in_threads)
from _ops import FAST, NORMS, OPS, PLAIN, RUNNING, by_function, fn_id, name_id

THREAD_COUNTS = (1, 2, 3, 4, 8)


def _data(key, shape, dtype, loc=3.0, scale=2.0):
    rng = rng_for("reliability", key, shape, np.dtype(dtype).name)
    return (rng.standard_normal(shape) * scale + loc).astype(dtype)


def _channel_params(x, key):
    rng = rng_for("params", key, x.shape, x.dtype.name)
    C = x.shape[1]
    return (rng.uniform(0.5, 1.5, C).astype(x.dtype), rng.normal(0, 1, C).astype(x.dtype),
            rng.normal(0, 1, C).astype(x.dtype), rng.uniform(0.5, 2.0, C).astype(x.dtype))


# --------------------------------------------------------------------------------------
# one call of every op flavour, returning every array it produces
# --------------------------------------------------------------------------------------

def case_params(op, x, kind, arg=None):
    """(weight, bias, running) of a run_case call: per-channel parameters and running
    statistics (or None where op passes none) from _channel_params(x, kind), per-element
    ones of layer_norm / rms_norm from their own generator."""
    w, b, rm, rv = _channel_params(x, kind)
    if op.per_element:
        rng = rng_for("ln-params", op.name, x.shape)
        nshape = op.param_shape(x.shape, arg)
        w = rng.uniform(0.5, 1.5, nshape).astype(x.dtype)
        b = rng.normal(0, 1, nshape).astype(x.dtype) if "bias" in op.params else None
    return w, b, ((rm, rv) if op.running else None)


def run_case(kind, x, nt, mode="new", arg=None):
    """Run one op flavour on x with num_threads=nt. kind: a record of tests/_ops.py, or
    layer_norm_int / rms_norm_int (an int normalized_shape: the tiny fast path).

    mode: "new" (out=None), "out" (a separate output buffer) or "inplace" (out=x on a
    private copy). Returns the list of produced arrays: the output, returned statistics and
    updated running statistics (fresh copies of the running statistics are used per call).
    """
    if mode == "inplace":
        x = x.copy()
        out = x
    elif mode == "out":
        out = np.full(x.shape, np.nan, x.dtype)
    else:
        out = None
    op = OPS[kind.removesuffix("_int")]
    w, b, running = case_params(op, x, kind, arg)
    kw = dict(out=out, num_threads=nt)
    if kind.endswith("_int"):
        kw["normalized_shape"] = x.shape[-1]
    elif op.return_stats:
        kw["return_stats"] = True
    res = op.outputs(op.call(x, w, b, running, arg, **kw), running)
    if out is not None:
        assert res[0] is out
    return res


def moments_case(x, nt, axis):
    mean, var = fastnorm.moments(x, axis=axis, ddof=1, dtype=np.float64, num_threads=nt)
    acc = fastnorm.Moments(axis)
    half = x.shape[0] // 2
    acc.update(x[:half], num_threads=nt).update(x[half:], num_threads=nt)
    return [np.asarray(mean), np.asarray(var), acc.mean, acc.var(1)]


def _bits(arrays):
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


# --------------------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------------------

# (kind, shape, dtype, arg): every op flavour, each large enough to run in parallel
CONCURRENT_CASES = [
    ("batch_norm_train", (8, 4, 64, 64), np.float32, None),
    ("batch_norm_train", (40000, 3), np.float64, None),
    ("batch_norm_nostats", (2, 2, 128, 128), np.float32, None),
    ("batch_norm_eval", (8, 4, 64, 64), np.float32, None),
    ("instance_norm", (2, 8, 64, 64), np.float32, None),
    ("instance_norm_stats", (1, 2, 256, 256), np.float64, None),
    ("instance_norm_eval", (2, 8, 64, 64), np.float32, None),
    ("group_norm", (2, 8, 64, 64), np.float32, 4),
    ("layer_norm", (64, 2048), np.float32, 1),
    ("layer_norm", (2, 65536), np.float64, 1),
    ("rms_norm", (4, 32, 1024), np.float32, 2),
    ("channel_layer_norm", (4, 16, 32, 32), np.float32, None),
    ("channel_layer_norm", (40000, 4), np.float64, None),
    # tiny calls (the serial fast path with num_threads=None)
    ("layer_norm_int", (16, 96), np.float32, None),
    ("rms_norm_int", (4, 5, 33), np.float64, None),
    ("batch_norm_eval", (2, 4, 7, 5), np.float32, None),
]
MOMENT_CASES = [((512, 256), np.float32, 0), ((4, 8, 4096), np.float64, (0, 2)),
                ((256, 1024), np.float32, 1)]
MODES = ("new", "out", "inplace")


def test_concurrent_calls_of_every_op_are_bitwise_serial():
    """8 Python threads run all the op flavours (tiny fast-path calls included), moments and
    Moments at once, in the three out modes, on shared read-only inputs (in place on
    private copies), with thread counts 1, 2 and None: every result equals the serial
    (num_threads=1) one to the bit."""
    jobs = []
    for i, (kind, shape, dtype, arg) in enumerate(CONCURRENT_CASES):
        x = _data(("conc", i), shape, dtype)
        x.flags.writeable = False           # shared by all threads; must never be written
        for mode in MODES:
            jobs.append((kind, x, mode, arg))
    for i, (shape, dtype, axis) in enumerate(MOMENT_CASES):
        x = _data(("conc-m", i), shape, dtype)
        x.flags.writeable = False
        jobs.append(("moments", x, "new", axis))

    def run(job, nt):
        kind, x, mode, arg = job
        if kind == "moments":
            return moments_case(x, nt, arg)
        return run_case(kind, x, nt, mode, arg)

    serial = [_bits(run(job, 1)) for job in jobs]
    n_threads, rounds = 8, 3
    failures = []

    def worker(t):
        for r in range(rounds):
            for j in range(len(jobs)):
                k = (j + 5 * t + r) % len(jobs)       # every thread in its own order
                nt = (1, 2, None)[(t + r + k) % 3]
                if _bits(run(jobs[k], nt)) != serial[k]:
                    failures.append((t, jobs[k][0], jobs[k][2], nt))

    run_in_threads(worker, n_threads, 120)
    assert not failures, "results differ from the serial ones: %s" % failures[:10]


GIL_SHAPE = (128, 8, 128, 256)     # 32M float32 values: ~50 ms or more per serial call
# the shape argument of each op on GIL_SHAPE (layer_norm: the last dim)
GIL_ARGS = {"group_norm": 2, "rms_norm": 2, "moments": (0, 2, 3)}


@pytest.fixture(scope="module")
def gil_buffers():
    x = rng_for("gil").random(GIL_SHAPE, dtype=np.float32)
    return x, np.empty_like(x)


@pytest.mark.parametrize("op", OPS.values(), ids=name_id)
def test_kernels_release_the_gil(op, gil_buffers):
    """While one thread runs a (single-threaded) kernel, another thread runs Python code.
    Nothing is timed (_helpers.calls_until_another_thread_ran): this holds on a machine
    whose cores are all busy."""
    x, out = gil_buffers
    w, b, rm, rv = _channel_params(x, "gil")
    if op.per_element or not op.params:          # per-channel parameters only
        w, b = None, None
    kw = dict(out=out) if op.is_norm else {}

    def call():
        return op.call(x, w, b, (rm, rv) if op.running else None, GIL_ARGS.get(op.function),
                       num_threads=1, **kw)
    call()                                           # warm up (page faults, imports)
    assert calls_until_another_thread_ran(call, tries=200) > 0, (
        "%s: no other Python thread ran during 200 kernel calls: the GIL is held while "
        "the kernel runs" % op.name)


# --------------------------------------------------------------------------------------
# determinism across thread counts
# --------------------------------------------------------------------------------------

# Shapes chosen so that the thread counts 1..8 take different parallel strategies:
# parallel over groups/channels, chunk-parallel statistics of few large groups, column
# blocks of different widths, and the switch between them within one shape.
# The few-large-groups shapes run in both dtypes: float64 outputs carry every bit of the
# merged statistics, float32 outputs can round a last-bit difference away.
DETERMINISM_CASES = [
    ("batch_norm_train", (4, 1, 256, 256), np.float32, None),     # one channel: chunks
    ("batch_norm_train", (4, 1, 256, 256), np.float64, None),
    ("batch_norm_train", (8, 3, 64, 64), np.float64, None),       # 3 channels: switches
    ("batch_norm_train", (16, 24, 16, 16), np.float32, None),     # many channels
    ("batch_norm_train", (70001, 3), np.float32, None),           # (N, C): column chunks
    ("batch_norm_train", (3000, 100), np.float64, None),
    ("batch_norm_nostats", (2, 2, 200, 200), np.float32, None),
    ("batch_norm_eval", (4, 3, 128, 128), np.float32, None),
    ("batch_norm_eval", (70001, 3), np.float64, None),
    ("instance_norm", (1, 2, 512, 512), np.float32, None),        # 2 large groups
    ("instance_norm", (1, 2, 512, 512), np.float64, None),
    ("instance_norm_stats", (8, 16, 32, 32), np.float64, None),   # many groups
    ("instance_norm_eval", (2, 3, 128, 128), np.float32, None),
    ("group_norm", (2, 6, 128, 128), np.float32, 3),              # 6 groups: switches at 4
    ("group_norm", (1, 4, 300, 300), np.float64, 1),
    ("layer_norm", (2, 2 ** 20), np.float32, 1),                  # 2 rows of 1M
    ("layer_norm", (2, 2 ** 20), np.float64, 1),
    ("layer_norm", (12, 3 * 2 ** 13 + 5), np.float64, 1),         # 12 rows: switches at 8
    ("layer_norm", (3000, 33), np.float32, 1),                    # many short rows
    ("layer_norm", (3, 64, 1031), np.float32, 2),
    ("rms_norm", (2, 2 ** 19), np.float32, 1),
    ("rms_norm", (2, 2 ** 19), np.float64, 1),
    ("rms_norm", (1000, 77), np.float64, 1),
    ("channel_layer_norm", (2, 3, 128, 128), np.float32, None),   # few column blocks
    ("channel_layer_norm", (2, 3, 128, 128), np.float64, None),
    ("channel_layer_norm", (16, 64, 8, 8), np.float64, None),
    ("channel_layer_norm", (70001, 3), np.float32, None),         # (N, C)
]
DET_IDS = ["%s-%s-%s" % (k, "x".join(map(str, s)), np.dtype(d).name)
           for k, s, d, _ in DETERMINISM_CASES]


@pytest.mark.parametrize("kind,shape,dtype,arg", DETERMINISM_CASES, ids=DET_IDS)
def test_identical_bits_for_every_thread_count(kind, shape, dtype, arg):
    x = _data(("det", kind), shape, dtype, loc=10.0, scale=3.0)
    base = _bits(run_case(kind, x, 1, "new", arg))
    for nt in THREAD_COUNTS[1:]:
        got = _bits(run_case(kind, x, nt, "inplace" if nt == 4 else "new", arg))
        for i, (g, r) in enumerate(zip(got, base)):
            assert g == r, "%s: result #%d differs between num_threads=1 and %d" % (kind, i, nt)


MOMENT_DET_CASES = [
    ((2 ** 21,), np.float32, None),
    ((2, 2 ** 20), np.float64, 1),
    ((5000, 130), np.float32, 0),
    ((4, 3, 256, 256), np.float32, (0, 2, 3)),
    ((4, 300, 200), np.float64, (0, 2)),
    ((64, 4, 4096), np.float32, (1,)),
]


@pytest.mark.parametrize("shape,dtype,axis", MOMENT_DET_CASES,
                         ids=[str(c) for c in range(len(MOMENT_DET_CASES))])
def test_moments_identical_bits_for_every_thread_count(shape, dtype, axis):
    x = _data(("det-m", shape), shape, dtype, loc=50.0, scale=3.0)
    base = _bits(moments_case(x, 1, axis))
    for nt in THREAD_COUNTS[1:]:
        assert _bits(moments_case(x, nt, axis)) == base, "num_threads=%d differs" % nt


# --------------------------------------------------------------------------------------
# non-finite data, NaN parameters, constant groups
# --------------------------------------------------------------------------------------

# (op, shape, arg): arg = num_groups or the number of normalized trailing dims; small
# shapes run serially, the large ones take the chunk-parallel paths (few large groups)
# the normalizations on the statistics of x, no running statistics (tests/_ops.py)
PLAIN_OPS = by_function(PLAIN)
NONFINITE_SHAPES = [(PLAIN_OPS[op], shape, arg) for op, shape, arg in [
    ("batch_norm", (3, 4, 5, 7), None), ("batch_norm", (2, 3, 150, 150), None),
    ("batch_norm", (40000, 3), None),
    ("instance_norm", (3, 4, 35), None), ("instance_norm", (1, 3, 150, 150), None),
    ("group_norm", (3, 4, 5, 7), 2), ("group_norm", (1, 6, 120, 120), 3),
    ("layer_norm", (6, 5, 7), 2), ("layer_norm", (3, 70000), 1),
    ("rms_norm", (6, 5, 7), 2), ("rms_norm", (3, 70000), 1),
    ("channel_layer_norm", (3, 4, 5, 7), None), ("channel_layer_norm", (2, 4, 100, 100), None),
    ("channel_layer_norm", (40000, 3), None),
]]
NONFINITE_VALUES = {"nan": [np.nan], "inf": [np.inf], "-inf": [-np.inf],
                    "inf_and_-inf": [np.inf, -np.inf], "nan_and_inf": [np.nan, np.inf]}


def run_plain(op, x, arg, nt, w=None, b=None):
    """(y, float64 reference y) for op with optional affine parameters (batch statistics)."""
    return op.call(x, w, b, arg=arg, num_threads=nt), op.ref(x, w, b, arg=arg)[0]


def _tol(dtype):
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-9


def _assert_matches_reference(y, ref, mask, dtype, what):
    """Values of y under mask equal ref: same NaN positions, same infinities, finite values
    within the float32/float64 tolerance."""
    got, exp = y[mask].astype(np.float64), ref[mask]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exp),
                                  err_msg="%s: NaN positions differ from the reference" % what)
    fin = np.isfinite(exp)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(exp)], exp[~fin & ~np.isnan(exp)],
                                  err_msg=what)
    if fin.any():
        err = np.max(np.abs(got[fin] - exp[fin]))
        assert err <= _tol(dtype) * max(1.0, np.max(np.abs(exp[fin]))), (what, err)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("value", list(NONFINITE_VALUES))
@pytest.mark.parametrize("op,shape,arg", NONFINITE_SHAPES,
                         ids=["%s-%s" % (o.function, "x".join(map(str, s))) for o, s, _ in
                              NONFINITE_SHAPES])
def test_non_finite_values_stay_in_their_group(op, shape, arg, value, dtype):
    """NaN/Inf at the first, last, a chunk-boundary and a random position of one group:
    that group follows the float64 reference formula (NaN where it is NaN), every other
    group is finite and correct; serial and 2 threads."""
    rng = rng_for("nonfinite", op.function, shape, value, np.dtype(dtype).name)
    labels = op.groups(shape, arg)
    n_groups = int(labels.max()) + 1
    pshape = op.param_shape(shape, arg)
    w = rng.uniform(0.5, 1.5, pshape).astype(dtype)
    b = rng.normal(0, 1, pshape).astype(dtype) if "bias" in op.params else None
    for where in ("first", "last", "chunk", "random"):
        x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
        g = int(rng.integers(n_groups))
        members = np.flatnonzero(labels.reshape(-1) == g)       # in memory order
        pos = {"first": 0, "last": len(members) - 1, "chunk": min(2048, len(members) - 1),
               "random": int(rng.integers(len(members)))}[where]
        vals = NONFINITE_VALUES[value]
        picks = [members[pos]] + list(rng.choice(members, len(vals) - 1, replace=False))
        for p, v in zip(picks, vals):
            x.reshape(-1)[p] = v
        bad = labels == g
        for nt in (1, 2):
            what = "%s %s at %s (nt=%d)" % (op.function, value, where, nt)
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                y, ref = run_plain(op, x, arg, nt, w, b)
            assert np.isfinite(y[~bad]).all(), what + ": non-finite values leaked out"
            _assert_matches_reference(y, ref, ~bad, dtype, what)
            _assert_matches_reference(y, ref, bad, dtype, what + " (its own group)")


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_batch_norm_non_finite_running_stats_only_in_its_channel(dtype, value):
    x = _data("bn-nonfinite-stats", (2, 3, 150, 150), dtype)
    x[1, 2, 17, 3] = value
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    fastnorm.batch_norm(x, rm, rv, None, None, True, 0.1, 1e-5, num_threads=2)
    assert not np.isfinite(rm[2]) and not np.isfinite(rv[2])
    _, erm, erv = ref_batch_norm(x[:, :2], np.zeros(2), np.ones(2), None, None, True, 0.1)
    np.testing.assert_allclose(rm[:2], erm, rtol=1e-5)
    np.testing.assert_allclose(rv[:2], erv, rtol=1e-5)


# one record per normalization; those with running statistics in eval mode
NAN_PARAM_OPS = [op for op in OPS.values()
                 if op.is_norm and (op.stats == "running" or not op.takes_running)]
NAN_PARAM_CASES = [(op, p) for op in NAN_PARAM_OPS for p in op.params]


@pytest.mark.parametrize("op,param", NAN_PARAM_CASES, ids=fn_id)
def test_nan_parameter_stays_in_its_channel(op, param):
    """A NaN in one entry of a parameter makes NaN only the outputs that use that entry
    (running statistics: eval mode)."""
    shape = (3, 4, 40, 300)
    x = _data(("nan-param", op.function), shape, np.float32)
    per_element = op.per_element
    pshape = shape[2:] if per_element else (4,)
    rng = rng_for("nan-param", op.function, param)
    params = {"weight": rng.uniform(0.5, 1.5, pshape).astype(np.float32),
              "bias": rng.normal(0, 1, pshape).astype(np.float32),
              "running_mean": rng.normal(0, 1, 4).astype(np.float32),
              "running_var": rng.uniform(0.5, 2, 4).astype(np.float32)}
    idx = (7, 123) if per_element else (2,)
    params[param][idx] = np.nan
    expect_nan = np.zeros(shape, bool)
    if per_element:
        expect_nan[:, :, idx[0], idx[1]] = True
    else:
        expect_nan[:, idx[0]] = True
    w = params["weight"]
    b = params["bias"] if "bias" in op.params else None
    running = (params["running_mean"], params["running_var"]) if op.running else None
    arg = {"num_groups": 4, "normalized_shape": 2}.get(op.shape_arg)   # 4 groups; (H, W)
    y = op.call(x, w, b, running, arg, num_threads=2)
    np.testing.assert_array_equal(np.isnan(y), expect_nan)


@pytest.mark.parametrize("kind,shape,arg", [
    ("layer_norm", (3, 70001), 1), ("rms_norm", (3, 70001), 1),
    ("instance_norm", (1, 3, 250, 250), None), ("group_norm", (1, 6, 150, 150), 3),
    ("batch_norm_train", (2, 3, 150, 150), None), ("channel_layer_norm", (2, 4, 90, 90), None),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_constant_groups_exact_under_every_parallel_strategy(kind, shape, arg, dtype):
    """A constant group normalizes to exactly the bias (0 for rms_norm of zeros) whatever
    the thread count, also when its statistics are merged from chunks computed by several
    threads. (Small serial cases are in test_accuracy.py.)"""
    x = _data(("const", kind), shape, dtype)
    op = OPS[kind]
    labels = op.groups(shape, arg)
    g = 1
    const = 1e4 + 0.1 if op.centered else 0.0
    x[labels == g] = const
    for nt in THREAD_COUNTS:
        y = run_case(kind, x, nt, "new", arg)[0]
        _, b, _ = case_params(op, x, kind, arg)
        if b is None:                              # rms_norm of zeros
            b = np.zeros(op.param_shape(shape, arg), dtype)
        expect = op.expand(b, shape)
        mask = labels == g
        np.testing.assert_array_equal(y[mask], expect[mask], err_msg="num_threads=%d" % nt)
        assert np.isfinite(y).all()


def test_moments_of_finite_data_never_nan():
    """Finite float64 data whose variance overflows: NumPy's variance is inf; a NaN would
    pass for 'no data' downstream. The mean stays finite and right."""
    x = rng_for("overflow-var").standard_normal((4, 1000)) * 1e200
    with np.errstate(over="ignore"):
        exp_mean, exp_var = x.mean(axis=1), x.var(axis=1)
    mean, var = fastnorm.moments(x, axis=1)
    np.testing.assert_allclose(mean, exp_mean, rtol=1e-9)
    assert not np.isnan(var).any(), "variance of finite data is NaN: %s (NumPy: %s)" % (
        var, exp_var)
    np.testing.assert_array_equal(var, exp_var)


# --------------------------------------------------------------------------------------
# hostile arguments (in addition to tests/test_validation_norms.py)
# --------------------------------------------------------------------------------------

HSHAPE = (3, 4, 5, 6)


def valid_call(op, dtype=np.float32, shape=HSHAPE):
    """x and a valid keyword set with every parameter (training mode)."""
    return op.valid_call(dtype, shape, "hostile", op.function, shape)


def expect_rejected(op, x, kw, name, exc=(TypeError, ValueError), modes=("new", "out",
                                                                         "inplace")):
    """op(x, **kw) raises exc with a message naming `name`, in every out mode, and leaves
    every array handed in (x, out, parameters, running statistics) unchanged."""
    ran = 0
    for mode in modes:
        call_kw = dict(kw)
        if mode == "out":
            if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
                continue
            call_kw["out"] = np.full(x.shape, 7.25, x.dtype)
        elif mode == "inplace":
            if not (isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim
                    and x.flags.c_contiguous and x.flags.writeable):
                continue
            x = x.copy()
            call_kw["out"] = x
        arrays = arrays_in(x, call_kw)
        copies = [a.copy() for a in arrays]
        with pytest.raises(exc) as info:
            op.fn(x, **call_kw)
        assert re.search(r"\b%s\b" % re.escape(name), str(info.value)), (
            "%s: the error does not name %r: %s: %s" % (op.function, name,
                                                        info.type.__name__, info.value))
        for a, c in zip(arrays, copies):
            np.testing.assert_array_equal(a, c, err_msg="%s (%s) modified an argument"
                                          % (op.function, mode))
        ran += 1
    assert ran


class _Opaque:
    pass


BAD_X = {
    "None": None,
    "str": "abc",
    "bytes": b"\x00" * 16,
    "dict": {"a": 1.0},
    "set": {1.0, 2.0},
    "object": _Opaque(),
    "list_of_str": [["a", "b"], ["c", "d"]],
    "ragged_list": [[1.0, 2.0], [3.0]],
    "float_scalar": 1.5,
    "0d_array": np.float32(2.0),
}


@pytest.mark.parametrize("bad", list(BAD_X))
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_x_not_an_array_of_floats(op, bad):
    _, kw = valid_call(op)
    for k in op.params + ("normalized_shape",):
        kw.pop(k, None)
    if op.shape_arg == "normalized_shape":
        kw["normalized_shape"] = 2
    expect_rejected(op, BAD_X[bad], kw, "x", modes=("new",))


@pytest.mark.parametrize("op", [op for op in NORMS if op.min_ndim <= 2], ids=fn_id)
def test_x_numpy_matrix(op):
    """np.matrix is an ndarray subclass that stays 2-D when reshaped: a clear error naming
    x, or the result for the plain array."""
    base = _data("matrix", (6, 4), np.float64)
    kw = dict(op.flags)                                  # batch_norm: training=True
    if op.shape_arg is not None:
        kw[op.shape_arg] = {"num_groups": 2, "normalized_shape": 4}[op.shape_arg]
    m = np.asmatrix(base.copy())
    try:
        y = op.fn(m, **kw)
    except (TypeError, ValueError) as exc:
        assert re.search(r"\bx\b", str(exc)), (
            "unclear error for np.matrix input: %s: %s" % (type(exc).__name__, exc))
        return
    np.testing.assert_array_equal(np.asarray(y), op.fn(base, **kw))
    np.testing.assert_array_equal(np.asarray(m), base)


BAD_PARAMS = {
    "str_array": lambda p: p.astype(str),
    "bytes_array": lambda p: p.astype("S8"),
    "list_of_str": lambda p: [str(v) for v in p.reshape(-1)],
    "str": lambda p: "weights",
    "dict": lambda p: {"w": 1.0},
    "object": lambda p: _Opaque(),
    "ragged_list": lambda p: [[1.0, 2.0], [3.0]],
    "complex_scalar": lambda p: 1 + 2j,
    "datetime": lambda p: np.zeros(p.shape, "datetime64[s]"),
    "structured": lambda p: np.zeros(p.shape, [("a", "f4"), ("b", "f4")]),
}


PARAM_CASES = [(op, p) for op in NORMS for p in op.params]


@pytest.mark.parametrize("bad", list(BAD_PARAMS))
@pytest.mark.parametrize("op,param", PARAM_CASES, ids=fn_id)
def test_parameter_garbage(op, param, bad):
    x, kw = valid_call(op)
    kw[param] = BAD_PARAMS[bad](kw[param])
    expect_rejected(op, x, kw, param)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("container", ["list", "tuple", "memoryview"])
@pytest.mark.parametrize("op", [op for op in NORMS if op.running], ids=fn_id)
def test_running_stats_not_ndarray(op, container, training):
    """Updated in place (training): must be an ndarray; in eval any float sequence works."""
    x, kw = valid_call(op)
    kw[op.mode_flag] = training
    ref_kw = dict(kw, running_mean=kw["running_mean"].copy(),
                  running_var=kw["running_var"].copy())
    conv = {"list": list, "tuple": tuple, "memoryview": memoryview}[container]
    rm = conv(kw["running_mean"].copy())
    kw["running_mean"] = rm
    if training:
        expect_rejected(op, x, kw, "running_mean")
    else:
        np.testing.assert_array_equal(op.fn(x, **kw), op.fn(x, **ref_kw))


BAD_SCALARS = {
    "eps": ["1e-5", None, 1e-5 + 0j, True, np.array([1e-5]), 10 ** 400, np.float32("nan"),
            np.float64(-1e-3), -np.inf, [1e-5]],
    "momentum": ["0.1", None, 1.5, -0.1, np.inf, np.nan, True, 0.1 + 0j, 10 ** 400, [0.1]],
    "training": [1, 0, "yes", None, np.array(True), [True]],
    "use_input_stats": [1, "no", None],
    "return_stats": [1, "no", None],
    "num_groups": [True, np.float64(2.0), [2], "two", 2 ** 70],
    "num_threads": [2.0, np.float64(2), [2], "2", -(2 ** 64), np.int64(-3)],
}
def scalar_cases(ops, bad):
    """(op, name, i): every bad value bad[name][i] of every argument name that op takes
    (eps=None only where it is not the default)."""
    return [(op, name, i) for name, vals in bad.items() for i in range(len(vals))
            for op in ops if name in op.scalars
            and not (name == "eps" and vals[i] is None and op.eps is None)]


def scalar_ids(cases, bad):
    return [("%s-%s-%r" % (op.function, n, bad[n][i]))[:50] for op, n, i in cases]


SCALAR_CASES = scalar_cases(NORMS, BAD_SCALARS)


@pytest.mark.parametrize("op,name,i", SCALAR_CASES, ids=scalar_ids(SCALAR_CASES, BAD_SCALARS))
def test_scalar_argument_garbage(op, name, i):
    """Wrong types and values for eps, momentum, the flags, num_groups and num_threads
    (huge ints included): an error naming the argument, nothing written."""
    # num_threads: x large enough that a valid count would run in parallel
    x, kw = valid_call(op, shape=(8, 4, 64, 64) if name == "num_threads" else HSHAPE)
    kw[name] = BAD_SCALARS[name][i]
    expect_rejected(op, x, kw, name, exc=(TypeError, ValueError, OverflowError))


# The serial fast path for tiny calls (layer_norm/rms_norm with an int normalized_shape,
# batch_norm in eval mode; num_threads=None) recognizes its arguments before the general
# validation runs: the same garbage must get the same clear errors there.
TINY_SHAPE = (3, 4, 5, 6)


TINY_DRAW = {"running_mean": lambda rng, n: rng.normal(0, 1, n),
             "running_var": lambda rng, n: rng.uniform(0.5, 2, n),
             "weight": lambda rng, n: rng.uniform(0.5, 1.5, n),
             "bias": lambda rng, n: rng.normal(0, 1, n)}


def tiny_call(op):
    """x and a plain float32 call of a fast-path form: an int normalized_shape, every
    parameter, eps 1e-5."""
    rng = rng_for("tiny-hostile", op.function)
    x = (rng.standard_normal(TINY_SHAPE) * 2 + 1).astype(np.float32)
    n = TINY_SHAPE[-1] if op.per_element else TINY_SHAPE[1]
    kw = {"normalized_shape": n} if op.shape_arg == "normalized_shape" else {}
    for p in op.params:
        kw[p] = TINY_DRAW[p](rng, n).astype(np.float32)
    kw.update(op.flags)
    if "momentum" in op.scalars:
        kw["momentum"] = 0.1
    kw["eps"] = 1e-5
    return x, kw


TINY_PARAM_CASES = [(op, p) for op in FAST for p in op.params]


# (the garbage whose only issue is the general path's message -- ragged lists -- is left to
# test_parameter_garbage: the fast path hands it over unchanged)
@pytest.mark.parametrize("bad", [b for b in BAD_PARAMS if b != "ragged_list"]
                         + ["float16", "float64_other", "2d"])
@pytest.mark.parametrize("op,param", TINY_PARAM_CASES, ids=fn_id)
def test_tiny_fast_path_parameter_garbage(op, param, bad):
    x, kw = tiny_call(op)
    p = kw[param]
    if bad in BAD_PARAMS:
        kw[param] = BAD_PARAMS[bad](p)
        expect_rejected(op, x, kw, param)
        return
    # parameters the fast path does not take but the general path accepts or rejects
    kw_ref = dict(kw)
    if bad == "2d":
        kw[param] = p.reshape(1, -1)
        expect_rejected(op, x, kw, param)
        return
    kw[param] = p.astype(np.float16 if bad == "float16" else np.float64)
    kw_ref[param] = kw[param].astype(np.float32)
    np.testing.assert_array_equal(op.fn(x, **kw), op.fn(x, **kw_ref))


TINY_SCALARS = {
    "eps": [np.float32("nan"), -1e-5, np.inf, "1e-5", None, np.float64(-1.0), float("nan")],
    "momentum": [1.5, -0.5, np.nan, "0.1", None],
    "training": [0, "no", None, np.array(False)],
    "num_threads": [0, -1, 2.0, "1"],
    "normalized_shape": [2 ** 70, 2 ** 63, -6, 6.0, "6", 0],
}
TINY_SCALAR_CASES = scalar_cases(FAST, TINY_SCALARS)


@pytest.mark.parametrize("op,name,i", TINY_SCALAR_CASES,
                         ids=scalar_ids(TINY_SCALAR_CASES, TINY_SCALARS))
def test_tiny_fast_path_scalar_garbage(op, name, i):
    x, kw = tiny_call(op)
    kw[name] = TINY_SCALARS[name][i]
    expect_rejected(op, x, kw, name, exc=(TypeError, ValueError, OverflowError))


@pytest.mark.parametrize("nt", [2 ** 31, 2 ** 40, 2 ** 64, np.int64(2 ** 62)],
                         ids=["2**31", "2**40", "2**64", "int64(2**62)"])
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_num_threads_beyond_c_int(op, nt):
    """Thread counts that do not fit a C int: the result for any thread count (a cap is
    invisible, results do not depend on it) or an error naming num_threads; nothing written.
    (Counts that fit a C int but no machine, like 10**9, run in a subprocess in
    test_reliability_processes.py: a runaway count can abort the process.)"""
    x, kw = valid_call(op, shape=(8, 4, 64, 64))
    expect = op.fn(x, **dict(valid_call(op, shape=(8, 4, 64, 64))[1], num_threads=1))
    snap = [(a, a.copy()) for a in arrays_in(x, kw)]
    try:
        y = op.fn(x, num_threads=nt, **kw)
    except (TypeError, ValueError, OverflowError) as exc:
        assert re.search(r"\bnum_threads\b", str(exc)), "%s: %s" % (type(exc).__name__, exc)
        for a, c in snap:
            np.testing.assert_array_equal(a, c)
        return
    np.testing.assert_array_equal(y, expect)


BAD_OUT = {
    "list": lambda x: np.zeros_like(x).tolist(),
    "tuple": lambda x: tuple(np.zeros_like(x).reshape(-1)),
    "scalar": lambda x: 0.0,
    "str": lambda x: "out",
    "int_array": lambda x: np.zeros(x.shape, np.int32),
    "same_bytes_other_dtype": lambda x: x.view(np.int32),
    "matrix": lambda x: np.asmatrix(np.zeros((x.shape[0], x.size // x.shape[0]), x.dtype)),
}


@pytest.mark.parametrize("bad", list(BAD_OUT))
@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_out_garbage(op, bad):
    x, kw = valid_call(op)
    kw["out"] = BAD_OUT[bad](x)
    expect_rejected(op, x, kw, "out", modes=("new",))


@pytest.mark.parametrize("op", NORMS, ids=fn_id)
def test_out_is_another_view_of_x_means_in_place(op):
    """out=x.view() (another ndarray object over the same memory, same layout) is the same
    buffer as x: it normalizes in place, and the result is the out-of-place one."""
    x, kw = valid_call(op)
    expect = op.fn(x, **valid_call(op)[1])
    y = op.fn(x, out=x.view(), **kw)
    np.testing.assert_array_equal(y, expect)
    np.testing.assert_array_equal(x, expect)


@pytest.mark.parametrize("op,param", PARAM_CASES, ids=fn_id)
def test_out_overlapping_a_parameter(op, param):
    """out shares memory with weight, bias or a running statistic: either a clear error
    naming out (nothing written), or the result of the same call without the overlap (as
    NumPy's ufuncs do); never a silently wrong result."""
    x, kw = valid_call(op)
    ref_kw = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    expect = op.fn(x, **ref_kw)
    out = np.zeros_like(x)
    p = kw[param]
    alias = out.reshape(-1)[5:5 + p.size].reshape(p.shape)   # a view into out
    alias[...] = p
    kw[param] = alias
    out_before = out.copy()
    try:
        y = op.fn(x, out=out, **kw)
    except ValueError as exc:
        assert "out" in str(exc), exc
        np.testing.assert_array_equal(out, out_before)
        return
    assert y is out
    updated = param in RUNNING
    if not updated:
        np.testing.assert_array_equal(y, expect, err_msg="%s with out overlapping %s gave a "
                                      "wrong result" % (op.function, param))
    else:
        # the running statistic lives inside out: both cannot hold their values; the call
        # must have refused (handled above) -- reaching here means one of them is wrong
        pytest.fail("%s: out overlaps %s (updated in place) and the call did not refuse"
                    % (op.function, param))


# --------------------------------------------------------------------------------------
# in place means in place: no buffer of the input's order of size behind the caller's back
# --------------------------------------------------------------------------------------

SCRATCH_SHAPE = (64, 3, 128, 256)       # 25 MB of float32, 3 channels


# every record, and two of them on (N, C) input
SCRATCH_KINDS = list(OPS) + ["channel_layer_norm_2d", "batch_norm_nostats_2d"]
SCRATCH_ARGS = {"group_norm": 3, "moments": (0, 2, 3)}   # layer / rms norm: the last dim


@pytest.mark.parametrize("kind", SCRATCH_KINDS)
def test_in_place_calls_allocate_little_scratch_memory(kind):
    """A huge input normalized in place (out=x) must not need another buffer of its size:
    the NumPy allocations of a call (traced by tracemalloc) stay below 5% of x. A scratch
    array per position or per element would make in-place normalization of a buffer that
    fills most of the memory fail."""
    import tracemalloc
    x = _data("scratch", SCRATCH_SHAPE, np.float32)
    w, b, rm, rv = _channel_params(x, "scratch")
    op = OPS[kind.removesuffix("_2d")]
    xx = x.reshape(-1, 3) if kind.endswith("_2d") else x
    if op.per_element or not op.params:          # per-channel parameters only
        w, b = None, None
    kw = dict(out=xx) if op.is_norm else {}
    running = (rm, rv) if op.running else None

    def call():
        return op.call(xx, w, b, running, SCRATCH_ARGS.get(op.function), **kw)
    call()                                      # warm up: imports, caches
    tracemalloc.start()
    try:
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 0.05 * x.nbytes, (
        "%s in place allocated %.1f MB of scratch for a %.1f MB input"
        % (kind, peak / 1e6, x.nbytes / 1e6))
