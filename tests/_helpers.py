"""Shared helpers for the fastnorm test-suite.

* deterministic random generators (``rng_for``),
* non-contiguous views with the same values (``noncontig``),
* float64 NumPy reference implementations of the six normalizations (``ref_*``),
* ``unchanged``: a context manager asserting arrays are not modified,
* ``dtype_pattern``: a regex matching a message that names a dtype,
* ``max_abs_err`` and ``assert_close_to_ref``: the float32/float64 comparison policy,
* ``run_in_threads`` and ``calls_until_another_thread_ran``: concurrency and the GIL.

The table of the operations themselves (calls, references, parameters) is tests/_ops.py.
"""

import contextlib
import re
import sys
import threading
import time
import zlib

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)

# Every non-float dtype the contract says must raise TypeError naming the dtype.
BAD_DTYPES = ("int32", "int64", "uint8", "bool", "complex64", "complex128", "object", "str")


# --------------------------------------------------------------------------------------
# random data
# --------------------------------------------------------------------------------------

def rng_for(*keys):
    """A generator seeded deterministically from ``keys`` (independent of PYTHONHASHSEED)."""
    return np.random.default_rng(zlib.crc32(repr(keys).encode("utf-8")))


def random_data(rng, shape, dtype=np.float64, loc=None, scale=None):
    """Normal data with a random offset and scale (no values near the float limits)."""
    if loc is None:
        loc = rng.uniform(-2.0, 2.0)
    if scale is None:
        scale = rng.uniform(0.5, 3.0)
    return (rng.standard_normal(shape) * scale + loc).astype(dtype)


def as_bad_dtype(x, name):
    """``x`` converted to one of ``BAD_DTYPES``."""
    if name == "str":
        return x.astype(str)
    if name == "object":
        return x.astype(object)
    if name == "bool":
        return x > 0
    if name.startswith("complex"):
        return (x + 1j).astype(name)
    if name == "uint8":
        return np.abs(x).astype(name)
    return x.astype(name)


def dtype_pattern(arr_or_dtype):
    """Regex that matches a message naming the dtype of ``arr_or_dtype``."""
    dt = getattr(arr_or_dtype, "dtype", None)
    dt = np.dtype(arr_or_dtype if dt is None else dt)
    names = {str(dt), dt.name, repr(dt)}
    if dt.kind == "U":
        names |= {"str", "unicode", "string", "<U"}
    if dt.kind == "O":
        names |= {"object"}
    if dt.kind == "b":
        names |= {"bool"}
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


# --------------------------------------------------------------------------------------
# non-contiguous views
# --------------------------------------------------------------------------------------

NONCONTIG_KINDS = ("transposed", "step_last", "step_first", "reversed", "sliced")


def noncontig(arr, kind, fill=np.nan):
    """A non-C-contiguous view equal to ``arr``.

    The memory around the view (the parts of the base array it does not cover) is filled
    with ``fill`` (NaN by default), so a kernel reading outside the view produces NaN.
    """
    arr = np.asarray(arr)
    if kind == "transposed":
        perm = tuple(reversed(range(arr.ndim)))
        view = np.ascontiguousarray(arr.transpose(perm)).transpose(perm)
    elif kind == "step_last":
        base = np.full(arr.shape[:-1] + (2 * arr.shape[-1] + 1,), fill, dtype=arr.dtype)
        view = base[..., 1::2]
        view[...] = arr
    elif kind == "step_first":
        base = np.full((3 * arr.shape[0],) + arr.shape[1:], fill, dtype=arr.dtype)
        view = base[::3]
        view[...] = arr
    elif kind == "reversed":
        view = np.ascontiguousarray(arr[::-1])[::-1]
    elif kind == "sliced":
        pad = tuple((1, 2) for _ in range(arr.ndim))
        base = np.pad(arr, pad, constant_values=fill)
        sl = tuple(slice(1, 1 + n) for n in arr.shape)
        if arr.ndim >= 1:
            # additionally take every other element of the last axis
            base = np.repeat(base, 2, axis=-1)
            base[..., 1::2] = fill
            sl = sl[:-1] + (slice(2, 2 + 2 * arr.shape[-1], 2),)
        view = base[sl]
    else:
        raise ValueError(kind)
    assert view.shape == arr.shape
    np.testing.assert_array_equal(view, arr)
    return view


# --------------------------------------------------------------------------------------
# comparison policy
# --------------------------------------------------------------------------------------

def max_abs_err(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if got.size == 0:
        return 0.0
    assert np.array_equal(np.isnan(got), np.isnan(ref)), "NaN pattern differs"
    both_nan = np.isnan(got) & np.isnan(ref)
    diff = np.abs(got[~both_nan] - ref[~both_nan])
    return float(diff.max()) if diff.size else 0.0


def assert_close_to_ref(got, ref64, dtype, peer32=None, what="result"):
    """Compare a fastnorm result with a float64 reference.

    float64: rtol = atol = 1e-9.  float32: the max abs error must be no worse than the
    peer's (PyTorch's) float32 error on the same case, with slack
    ``max(1.5 * peer_err, 1e-6 * max(1, max|ref|))``; without a peer result the bound is the
    slack floor times 4.
    """
    got = np.asarray(got)
    ref64 = np.asarray(ref64, dtype=np.float64)
    assert got.shape == ref64.shape, "%s: shape %s != %s" % (what, got.shape, ref64.shape)
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(got, ref64, rtol=1e-9, atol=1e-9, err_msg=what)
        return
    scale = max(1.0, float(np.max(np.abs(ref64)))) if ref64.size else 1.0
    err = max_abs_err(got, ref64)
    if peer32 is not None:
        peer_err = max_abs_err(peer32, ref64)
        bound = max(1.5 * peer_err, 1e-6 * scale)
    else:
        peer_err = None
        bound = 4e-6 * scale
    assert err <= bound, "%s: fastnorm float32 max abs error %.3g > bound %.3g (torch: %s)" % (
        what, err, bound, peer_err)


def arrays_in(*objs):
    """The ndarrays among objs and the values of dicts among them (arguments to watch)."""
    found = []
    for o in objs:
        if isinstance(o, np.ndarray):
            found.append(o)
        elif isinstance(o, dict):
            found.extend(v for v in o.values() if isinstance(v, np.ndarray))
    return found


@contextlib.contextmanager
def unchanged(*arrays):
    """Assert that none of ``arrays`` (None entries are ignored) is modified in the block."""
    arrays = [a for a in arrays if a is not None]
    copies = [np.array(a, copy=True) for a in arrays]
    try:
        yield
    finally:
        for i, (a, c) in enumerate(zip(arrays, copies)):
            assert a.shape == c.shape and a.dtype == c.dtype
            np.testing.assert_array_equal(a, c, err_msg="argument #%d was modified" % i)


def valid_call(op, dtype, shape, *seed):
    """x of `shape` and a full valid keyword set for fastnorm.<op>, every parameter given
    (training mode with running statistics where the op has them); seed: rng_for keys.
    The registry's Op.valid_call of the function's record in _ops.NORMS."""
    import _ops                     # here: _ops imports this module
    return _ops.by_function(_ops.NORMS)[op].valid_call(dtype, shape, *seed)


def run_in_threads(worker, n, timeout):
    """Run worker(0) ... worker(n-1) in n threads that start together (worker gets its
    index); assert that none hangs (join timeout, seconds) and that none raised."""
    barrier = threading.Barrier(n)
    errors = []

    def body(i):
        try:
            barrier.wait(timeout)
            worker(i)
        except BaseException as exc:        # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout)
    assert not any(th.is_alive() for th in threads), "a worker thread hangs"
    assert not errors, errors


def calls_until_another_thread_ran(call, tries):
    """Call `call()` up to `tries` times in a row; returns how many calls it took until
    another Python thread ran Python code while this thread was in that run of calls, or
    0 when it never did. A call that releases the GIL gives a positive count; one that
    holds it throughout gives 0.

    Why this cannot pass for a call that holds the GIL: the switch interval is raised to
    1000 s, so during the run CPython never makes this thread hand over the GIL (a forced
    switch needs a thread that waited 1000 s for it); the watcher can take the GIL only
    when this thread gives it up itself. From `inside[0] = True` to `inside[0] = False`
    this thread runs only the loop below and `call()`, and the loop gives it up nowhere.
    So if `call()` holds the GIL, the watcher never runs while inside[0] is True: it only
    sees False, before and after the run. (The tests check this on C code that holds the
    GIL.)

    Why it needs no free core and no particular speed: nothing is timed. The watcher waits
    for the GIL, which a releasing call hands over at once; the OS runs the watcher on a
    free core, or by time-slicing on a busy machine, while the call is still computing,
    and the loop calls again until that has happened (`tries` bounds only the failing
    case). The watcher sleeps between its checks rather than spinning, so that it never
    keeps the GIL from this thread before the run starts."""
    inside, seen, finished = [False], [False], [False]

    def watcher():
        while not finished[0]:
            if inside[0]:
                seen[0] = True
                return                   # the thread's exit gives the GIL back
            time.sleep(1e-3)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    th = threading.Thread(target=watcher)
    n = 0
    try:
        th.start()
        inside[0] = True
        for n in range(1, tries + 1):
            call()
            if seen[0]:
                break
    finally:
        inside[0] = False
        finished[0] = True
        th.join()
        sys.setswitchinterval(old)
    return n if seen[0] else 0


# float64 reference implementations (NumPy), PyTorch semantics: shipped with the package
from fastnorm._reference import (ref_batch_norm, ref_channel_layer_norm,  # noqa: E402,F401
                                 ref_group_norm, ref_instance_norm, ref_layer_norm,
                                 ref_moments, ref_rms_norm)
