"""The per-channel apply of rows of channels (channels-last data) gives the bits of the
per-channel apply of NCHW data, for every kernel variant and channel count.

Both compute fma(x - hi[c], a[c], c[c]) with the same parameters; rows whose channels fill a
few vectors hold them in registers (_apply.h: with AVX-512 up to 128 float32 channels, with
AVX2 up to 32), other rows use the four-row sweep, and the first and last values of a
shifted row go apart (rows_head). So BatchNorm in eval mode on channels-last data must
equal, bit for bit, BatchNorm on the same values in NCHW memory: at any buffer offset, in
place or not, for any thread count."""
import numpy as np
import pytest

import fastnorm as fn
from _helpers import rng_for
from fastnorm import _dispatch

CHANNELS = [1, 3, 4, 8, 15, 16, 24, 32, 40, 48, 64, 96, 112, 128, 144, 256]


def _nhwc_at(values, offset_bytes):
    """values (N, C, H, W) copied into channels-last memory `offset_bytes` past a line."""
    n, c, h, w = values.shape
    item = values.dtype.itemsize
    buf = np.empty(values.size + 128 // item, values.dtype)
    start = (-buf.ctypes.data % 64 + offset_bytes) // item
    a = buf[start:start + values.size].reshape(n, h, w, c)
    a[...] = np.moveaxis(values, 1, -1)
    return a.transpose(0, 3, 1, 2)


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("variant", _dispatch.available_variants())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", CHANNELS)
def test_channels_last_apply_has_the_nchw_bits(variant, dtype, C):
    rng = rng_for("rows of channels", variant, dtype, C)
    params = [rng.normal(0, 1, C), rng.uniform(0.5, 2, C), rng.uniform(0.5, 1.5, C),
              rng.normal(0, 1, C)]
    rm, rv, w, b = (p.astype(dtype) for p in params)
    with _dispatch.using(variant):
        for shape in [(1, C, 1, 1), (2, C, 3, 5), (4, C, 16, 33)]:   # 1 to 2112 rows
            x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
            for nt in (1, 2):
                expected = fn.batch_norm(x, rm, rv, w, b, out=np.empty_like(x), num_threads=nt)
                for offset in (0, 16):
                    xl = _nhwc_at(x, offset)
                    tag = f"{variant} {np.dtype(dtype).name} {shape} offset {offset} nt {nt}"
                    got = fn.batch_norm(xl, rm, rv, w, b, num_threads=nt)
                    np.testing.assert_array_equal(_bits(got), _bits(expected), err_msg=tag)
                    fn.batch_norm(xl, rm, rv, w, b, out=xl, num_threads=nt)
                    np.testing.assert_array_equal(_bits(xl), _bits(expected),
                                                  err_msg=tag + " in place")


@pytest.mark.parametrize("variant", _dispatch.available_variants())
@pytest.mark.parametrize("C", [16, 64, 128])
def test_channels_last_apply_matches_float64(variant, C):
    """The same rows against the float64 formula (what the bits above are the bits of)."""
    rng = rng_for("rows of channels f64", variant, C)
    x = (rng.standard_normal((3, C, 20, 20)) * 2 + 5).astype(np.float32)
    rm = rng.normal(5, 1, C).astype(np.float32)
    rv = rng.uniform(1, 5, C).astype(np.float32)
    w = rng.uniform(0.5, 1.5, C).astype(np.float32)
    b = rng.normal(0, 1, C).astype(np.float32)
    ref = ((x.astype(np.float64) - rm[:, None, None].astype(np.float64))
           / np.sqrt(rv[:, None, None].astype(np.float64) + 1e-5)
           * w[:, None, None] + b[:, None, None])
    with _dispatch.using(variant):
        got = fn.batch_norm(_nhwc_at(x, 16), rm, rv, w, b)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


@pytest.mark.parametrize("variant", _dispatch.available_variants())
@pytest.mark.parametrize("C", [8, 16, 32, 48, 64, 96, 128])
def test_column_statistics_of_short_rows_have_the_wide_rows_bits(variant, C):
    """Column statistics sweep rows of whole vectors in C (_simd.h: fn_column_sums_sweep_f32)
    and other rows in stats.pxi's loop. Each column is summed alone either way, so the first
    C channels of a 161-channels-wider array (no whole vectors: stats.pxi's loop) must give
    the bits of the same values as an array of C channels (whole vectors from 8 on: the C
    sweep): BatchNorm training (and its running statistics) and InstanceNorm, over several
    chunks of rows and rows that are no multiple of four."""
    rng = rng_for("short column rows", variant, C)
    wide = (rng.standard_normal((3, C + 161, 29, 37)) * 3 + 2).astype(np.float32)
    narrow = np.ascontiguousarray(wide[:, :C])
    with _dispatch.using(variant):
        for nt in (1, 2):
            tag = f"{variant} C={C} nt={nt}"
            xw, xn = _nhwc_at(wide, 16), _nhwc_at(narrow, 16)
            rmw, rvw = np.zeros(C + 161, np.float32), np.ones(C + 161, np.float32)
            rmn, rvn = np.zeros(C, np.float32), np.ones(C, np.float32)
            yw = fn.batch_norm(xw, rmw, rvw, training=True, num_threads=nt)
            yn = fn.batch_norm(xn, rmn, rvn, training=True, num_threads=nt)
            np.testing.assert_array_equal(_bits(yn), _bits(yw[:, :C]), err_msg=tag)
            np.testing.assert_array_equal(_bits(rmn), _bits(rmw[:C]), err_msg=tag)
            np.testing.assert_array_equal(_bits(rvn), _bits(rvw[:C]), err_msg=tag)
            yw = fn.instance_norm(xw, num_threads=nt)
            yn = fn.instance_norm(xn, num_threads=nt)
            np.testing.assert_array_equal(_bits(yn), _bits(yw[:, :C]), err_msg=tag + " IN")
