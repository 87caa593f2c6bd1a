"""The serial fast path for tiny calls gives the general path's results, bit for bit, and
hands every unusual argument to the general path (which validates it)."""
import numpy as np
import pytest

import fastnorm as fn


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
    kernels = _dispatch.current
    assert kernels.rows_fast(x, 8, w, None, 1e-5, False, None, None) is not None
    assert kernels.rows_fast(x, (8,), w, None, None, True, x, 2) is x
    rm, rv = np.zeros(8, np.float32), np.ones(8, np.float32)
    assert kernels.batch_norm_eval_fast(x, rm, rv, None, None, 1e-5, None, None) is not None
    # what it does not take: non-contiguous x in place, a parameter of another dtype
    assert kernels.rows_fast(np.ones((8, 2), np.float32).T, 8, None, None, 1e-5, False, None,
                             None) is None
    assert kernels.rows_fast(x, 8, w.astype(np.float64), None, 1e-5, False, None, None) is None
