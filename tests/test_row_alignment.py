"""Rows of channels (channels-last data) at every offset within a cache line.

The apply of rows of channels shifts its rows to the 64-byte boundary of the output when
rows are whole cache lines long, with the per-channel parameters rotated to match; the
first and last values of each span are applied apart. The result must not depend on where
the buffer starts: the same bits at every offset, and the float64 reference."""

import numpy as np
import pytest

import fastnorm as fn
from _helpers import assert_close_to_ref, ref_batch_norm, ref_group_norm, ref_instance_norm, \
    ref_layer_norm, ref_rms_norm, rng_for


def _nhwc_at(values, offset_bytes):
    """The NCHW array `values` in channels-last memory starting `offset_bytes` past a
    64-byte boundary."""
    N, C, H, W = values.shape
    itemsize = values.dtype.itemsize
    buf = np.empty(values.size + 128 // itemsize, values.dtype)
    start = (-buf.ctypes.data % 64 + offset_bytes) // itemsize
    a = buf[start:start + values.size].reshape(N, H, W, C)
    assert a.ctypes.data % 64 == offset_bytes
    a[...] = np.moveaxis(values, 1, -1)
    return a.transpose(0, 3, 1, 2)


def _ops(C):
    mean = np.linspace(-1, 1, C)
    var = np.linspace(0.5, 2, C)
    w = np.linspace(0.5, 1.5, C)
    b = np.linspace(-0.25, 0.25, C)
    return {
        "batch_norm_eval": (
            lambda x, out, t: fn.batch_norm(x, mean.astype(x.dtype), var.astype(x.dtype),
                                            w.astype(x.dtype), b.astype(x.dtype),
                                            training=False, out=out, num_threads=t),
            lambda x: ref_batch_norm(x, mean, var, w, b)[0]),
        "batch_norm_train": (
            lambda x, out, t: fn.batch_norm(x, training=True, out=out, num_threads=t),
            lambda x: ref_batch_norm(x, training=True)[0]),
        "instance_norm": (
            lambda x, out, t: fn.instance_norm(x, weight=w.astype(x.dtype),
                                               bias=b.astype(x.dtype), out=out,
                                               num_threads=t),
            lambda x: ref_instance_norm(x, weight=w, bias=b)[0]),
        "group_norm": (
            lambda x, out, t: fn.group_norm(x, 4, w.astype(x.dtype), b.astype(x.dtype),
                                            out=out, num_threads=t),
            lambda x: ref_group_norm(x, 4, w, b)[0]),
    }


@pytest.mark.parametrize("op", ["batch_norm_eval", "batch_norm_train", "instance_norm",
                                "group_norm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [16, 64, 96])
@pytest.mark.parametrize("mode", ["inplace", "out"])
def test_every_offset_same_bits(op, dtype, C, mode):
    itemsize = np.dtype(dtype).itemsize
    values = (rng_for(op, C, dtype).standard_normal((3, C, 13, 11)) * 2 + 1).astype(dtype)
    call, ref = _ops(C)[op]
    results = []
    for offset in range(0, 64, itemsize):
        for threads in (1, 2):
            x = _nhwc_at(values, offset)
            if mode == "inplace":
                y = call(x, x, threads)
                assert y is x
            else:   # the output at another offset than x
                out = _nhwc_at(np.zeros_like(values), (offset + 3 * itemsize) % 64)
                y = call(x, out, threads)
                assert y is out
                np.testing.assert_array_equal(x, values)
            results.append(np.array(y))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert_close_to_ref(results[0], ref(values.astype(np.float64)), dtype)


def _rows_at(values, offset_bytes):
    """The (rows, n) array `values` in memory starting `offset_bytes` past a 64-byte
    boundary."""
    itemsize = values.dtype.itemsize
    buf = np.empty(values.size + 128 // itemsize, values.dtype)
    start = (-buf.ctypes.data % 64 + offset_bytes) // itemsize
    a = buf[start:start + values.size].reshape(values.shape)
    assert a.ctypes.data % 64 == offset_bytes
    a[...] = values
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [768, 770, 3000])
@pytest.mark.parametrize("rms,affine", [(False, "wb"), (False, "w"), (False, "b"), (True, "w")],
                         ids=["layer_norm_wb", "layer_norm_w", "layer_norm_b", "rms_norm_w"])
def test_affine_rows_two_at_a_time_have_the_bits_of_one(rms, affine, n, dtype):
    """Affine LayerNorm/RMSNorm rows are applied two at a time (rows.pxi:
    normalize_affine_row_pairs, w and b loaded once for both): every row must get the bits
    it gets alone, whether the two rows' 64-byte peels agree (n = 768) or not (770), in
    place or not, at any buffer offset, for 1-3 threads; and the float64 formula."""
    rng = rng_for("affine row pairs", rms, affine, n, dtype)
    values = (rng.standard_normal((7, n)) * 3 + 2).astype(dtype)
    w = rng.uniform(0.5, 1.5, n).astype(dtype) if "w" in affine else None
    b = rng.normal(0, 1, n).astype(dtype) if "b" in affine else None

    def call(x, out, t):
        if rms:
            return fn.rms_norm(x, (n,), w, out=out, num_threads=t)
        return fn.layer_norm(x, (n,), w, b, out=out, num_threads=t)
    alone = np.stack([call(values[r:r + 1], None, 1)[0] for r in range(len(values))])
    for offset in (0, 16, 48):
        for t in (1, 2, 3):
            x = _rows_at(values, offset)
            got = call(x, None, t)
            np.testing.assert_array_equal(got.view(np.uint8), alone.view(np.uint8))
            call(x, x, t)
            np.testing.assert_array_equal(x.view(np.uint8), alone.view(np.uint8))
    x64 = values.astype(np.float64)
    ref = (ref_rms_norm(x64, (n,), w) if rms else ref_layer_norm(x64, (n,), w, b)[0])
    assert_close_to_ref(alone, ref, dtype)
