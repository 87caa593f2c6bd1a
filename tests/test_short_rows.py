"""Short rows: fewer values than one block of the float32 lanes (a LayerNorm over C of
channels-last data, ViT's rows on SSE2) have their statistics summed two rows at a time, or
(AVX2 or AVX-512, LayerNorm/RMSNorm rows of whole vectors) eight rows at a time with their
horizontal sums, statistics and parameters in vectors across the rows (_rows.h). Each
row's results are the same bits as alone, so neither its neighbours, nor the row count,
nor the split into thread ranges changes them; the rows that need a second pass (an
outlier where the shift is sampled, squares beyond the float32 lanes, inf, NaN) take it as
they would alone."""

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _dispatch
from _helpers import ref_layer_norm, rng_for

LENGTHS = [1, 3, 15, 16, 17, 64, 100, 127, 128, 129, 255, 256, 511, 512, 513]


def _rows(length):
    """An odd number of rows, enough for the kernels to run in parallel, some of them hard."""
    n = 32768 // length + 7
    n += 1 - n % 2
    x = (rng_for("short-rows", length).standard_normal((n, length)) * 3 + 1).astype(
        np.float32)
    x[1, 0] += 1e3                  # the shift's sample far from the row's mean: re-centred
    x[4] *= np.float32(1e19)        # squares beyond the float32 lanes: float64 lanes
    x[7] = 2.5                      # a constant row
    x[10, -1] = np.inf
    x[13, 0] = np.nan
    x[14] = 0.0                     # a zero row: float64 lanes (mean square below the limit)
    return x


def _same_bits(got, want, err_msg=""):
    """Bit for bit (unlike assert_array_equal, -0.0 != 0.0), NaN where NaN (its sign and
    payload follow the operand order of each instruction, which differs between a row's
    scalar peel and vector body, so between buffers of other alignments)."""
    got, want = np.ascontiguousarray(got), np.ascontiguousarray(want)
    nan = np.isnan(got)
    np.testing.assert_array_equal(nan, np.isnan(want), err_msg=err_msg)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32),
                                  err_msg=err_msg)


def _run(op, x, num_threads):
    length = x.shape[1]
    if op == "layer_norm":
        w = np.linspace(0.5, 1.5, length, dtype=np.float32)
        return fn.layer_norm(x, length, w, -w, num_threads=num_threads)
    return fn.rms_norm(x, length, np.linspace(0.5, 1.5, length, dtype=np.float32),
                       num_threads=num_threads)


@pytest.mark.parametrize("variant", _dispatch.available_variants())
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_short_rows_same_bits_alone_and_together(op, length, variant):
    x = _rows(length)
    with _dispatch.using(variant):
        together = _run(op, x, 1)
        # row i's neighbour changes (pairs (0,1), (2,3).. become (1,2), (3,4)..)
        _same_bits(_run(op, x[1:], 1), together[1:])
        for i in (0, 1, 4, 7, 10, 13, 14, x.shape[0] - 1):   # alone, hard rows included
            _same_bits(_run(op, x[i:i + 1], 1), together[i:i + 1], err_msg=f"row {i}")
        for threads in (2, 3):
            _same_bits(_run(op, x, threads), together, err_msg=f"{threads} threads")


@pytest.mark.parametrize("variant", _dispatch.available_variants())
@pytest.mark.parametrize("length", [16, 48, 64, 96, 256, 496])
def test_short_rows_statistics_same_bits_alone_and_together(length, variant):
    """The returned mean and rstd of each row (from the vectors across eight rows where the
    block kernel runs) are its bits alone; hard rows fall back within a block."""
    x = _rows(length)
    with _dispatch.using(variant):
        y, mean, rstd = fn.layer_norm(x, length, return_stats=True, num_threads=2)
        for i in (0, 1, 4, 5, 7, 9, 10, 13, 14, 17):
            yi, mi, ri = fn.layer_norm(x[i:i + 1], length, return_stats=True, num_threads=1)
            for got, want in ((y[i], yi[0]), (mean[i], mi[0]), (rstd[i], ri[0])):
                _same_bits(got, want, err_msg=f"row {i}")


@pytest.mark.parametrize("length", [16, 64, 100, 256, 511])
def test_short_rows_accuracy(length):
    """float32 data with a large mean and a small spread: within 1e-5 of float64."""
    x = (1e4 + 0.01 * rng_for("short-rows-acc", length).standard_normal((257, length))
         ).astype(np.float32)
    got = fn.layer_norm(x, length)
    want = ref_layer_norm(x, length)[0]
    assert np.max(np.abs(got - want)) <= 1e-5
