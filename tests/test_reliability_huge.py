"""Buffers of more than 2**31 elements: no 32-bit index anywhere (issue 5).

One float32 buffer of 2**31 + 2**20 elements (~8.6 GB) is allocated once and refilled for
each test; every op runs in place (out=x) so no second buffer is needed. These tests need
~9 GB of free memory and a minute or two, so they run only with FASTNORM_HUGE_TESTS=1
(CI runs them as a separate step):

    FASTNORM_HUGE_TESTS=1 pytest tests/test_reliability_huge.py

The data is a pattern whose statistics are known in closed form: viewed as ROWS x ROW,
row r holds ``s[j % P] * scale[r] + off[r]`` with ``s`` a zero-mean periodic sequence of
half-integers, so every value is exact in float32. Each result is checked against the closed
form on every row/channel statistic and on blocks and strided samples of the output,
including the rows that start at or past element 2**31 (a wrapped 32-bit offset would
read or write the wrong rows, or crash).
"""

import os

import numpy as np
import pytest

import fastnorm

pytestmark = pytest.mark.skipif(
    os.environ.get("FASTNORM_HUGE_TESTS", "") != "1",
    reason="needs ~9 GB of memory and minutes: set FASTNORM_HUGE_TESTS=1 to run")

ROW = 2 ** 20
ROWS = 2049                      # ROWS * ROW = 2**31 + 2**20 elements
P = 1024                         # period of the pattern along a row (divides ROW)
S = np.arange(P, dtype=np.float64) - (P - 1) / 2           # -511.5 .. 511.5, mean 0
VAR_S = float(np.mean(S * S))                              # (P**2 - 1) / 12
R = np.arange(ROWS)
OFF = (R % 17 - 8).astype(np.float64)
SCALE = 1.0 + 0.25 * (R % 5)
# rows to check in full: the first, around 2**30, the last before 2**31 and past it
CHECK_ROWS = [0, 1, 1023, 1024, 2046, 2047, 2048]
EPS = 1e-5
# float32 data: statistics are exact to float32 round-off (the chunk sums of float32 input
# use float32 lanes); any indexing error shifts them by more than 1e-3
RTOL = 1e-6


@pytest.fixture(scope="module")
def huge():
    x = np.empty(ROWS * ROW, dtype=np.float32)
    assert x.size > 2 ** 31
    yield x
    del x


def fill(x):
    """x[r*ROW + j] = S[j % P] * SCALE[r] + OFF[r], exactly, in blocks (no big temporary)."""
    x2 = x.reshape(ROWS, ROW // P, P)
    s32 = S.astype(np.float32)
    for r0 in range(0, ROWS, 64):
        r1 = min(r0 + 64, ROWS)
        blk = x2[r0:r1]
        np.multiply(s32, SCALE[r0:r1, None, None].astype(np.float32), out=blk)
        np.add(blk, OFF[r0:r1, None, None].astype(np.float32), out=blk)
    assert x[ROWS * ROW - 1] == np.float32(S[-1] * SCALE[-1] + OFF[-1])


def row_values(r):
    """Row r of the pattern in float64."""
    return np.tile(S, ROW // P) * SCALE[r] + OFF[r]


def assert_close(got, expect, atol, what):
    got = np.asarray(got, dtype=np.float64)
    err = np.max(np.abs(got - expect))
    assert err <= atol, "%s: max abs error %.3g > %.3g" % (what, err, atol)


def test_huge_moments_all_rows_columns_channels(huge):
    """moments over the one channel of (ROWS, 1, ROW) (a single group of > 2**31 values),
    per row, per column (strided rows past 2**31) and per channel of (683, 3, ROW)."""
    x = huge
    fill(x)
    # one channel: BatchNorm's layout with C = 1, all 2**31 + 2**20 values in one group
    mean, var = fastnorm.moments(x.reshape(ROWS, 1, ROW), axis=(0, 2), dtype=np.float64)
    exp_mean = OFF.mean()
    exp_var = np.mean(SCALE ** 2) * VAR_S + OFF.var()
    np.testing.assert_allclose(mean, [exp_mean], rtol=0, atol=1e-9)
    np.testing.assert_allclose(var, [exp_var], rtol=RTOL)

    # per row: 2049 groups, the last ones starting at and past element 2**31
    mean, var = fastnorm.moments(x.reshape(ROWS, ROW), axis=1, dtype=np.float64)
    np.testing.assert_allclose(mean, OFF, rtol=0, atol=1e-9)
    np.testing.assert_allclose(var, SCALE ** 2 * VAR_S, rtol=RTOL)

    # per column over the 2049 rows (row offsets up to 2**31): column j depends on j % P
    mean, var = fastnorm.moments(x.reshape(ROWS, ROW), axis=0, dtype=np.float64)
    cols = S[:, None] * SCALE[None, :] + OFF[None, :]        # (P, ROWS)
    np.testing.assert_allclose(mean, np.tile(cols.mean(axis=1), ROW // P), rtol=0,
                               atol=1e-9)
    np.testing.assert_allclose(var, np.tile(cols.var(axis=1), ROW // P), rtol=RTOL)

    # per channel of (683, 3, ROW): channel c holds the rows r = 3n + c
    mean, var = fastnorm.moments(x.reshape(ROWS // 3, 3, ROW), axis=(0, 2), dtype=np.float64)
    for c in range(3):
        rows = R[c::3]
        np.testing.assert_allclose(mean[c], OFF[rows].mean(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(var[c], np.mean(SCALE[rows] ** 2) * VAR_S
                                   + OFF[rows].var(), rtol=RTOL)


def test_huge_layer_norm_over_rows_in_place(huge):
    x = huge
    fill(x)
    x2 = x.reshape(ROWS, ROW)
    y, mean, rstd = fastnorm.layer_norm(x2, ROW, out=x2, return_stats=True)
    assert y is x2
    rstd_exp = 1.0 / np.sqrt(SCALE ** 2 * VAR_S + EPS)
    np.testing.assert_allclose(mean[:, 0], OFF, rtol=0, atol=1e-5)
    np.testing.assert_allclose(rstd[:, 0], rstd_exp, rtol=1e-6)
    for r in CHECK_ROWS:
        assert_close(x2[r], (row_values(r) - OFF[r]) * rstd_exp[r], 2e-6, "row %d" % r)
    # a strided sample of every row
    j = np.arange(0, ROW, 4099)
    expect = S[j % P][None, :] * (SCALE * rstd_exp)[:, None]
    assert_close(x2[:, j], expect, 2e-6, "strided sample")


def test_huge_layer_norm_single_row_of_more_than_2_31(huge):
    """One group of 2**31 + 2**20 values (chunk-parallel statistics and block-parallel
    apply of a single group)."""
    x = huge
    fill(x)
    x1 = x.reshape(1, -1)
    y, mean, rstd = fastnorm.layer_norm(x1, x.size, out=x1, return_stats=True)
    exp_mean = OFF.mean()
    exp_rstd = 1.0 / np.sqrt(np.mean(SCALE ** 2) * VAR_S + OFF.var() + EPS)
    np.testing.assert_allclose(mean.reshape(()), exp_mean, atol=1e-5)
    np.testing.assert_allclose(rstd.reshape(()), exp_rstd, rtol=1e-6)
    x2 = x.reshape(ROWS, ROW)
    for r in CHECK_ROWS:
        assert_close(x2[r], (row_values(r) - exp_mean) * exp_rstd, 2e-6, "row %d" % r)


def test_huge_batch_norm_one_channel_in_place(huge):
    """BatchNorm training of (ROWS, 1, ROW): one channel of > 2**31 values in ROWS
    segments; the running statistics are updated from the exact batch statistics."""
    x = huge
    fill(x)
    x3 = x.reshape(ROWS, 1, ROW)
    rm, rv = np.zeros(1), np.ones(1)
    fastnorm.batch_norm(x3, rm, rv, None, None, True, 0.5, EPS, out=x3)
    n = x.size
    exp_mean = OFF.mean()
    exp_var = np.mean(SCALE ** 2) * VAR_S + OFF.var()
    np.testing.assert_allclose(rm, [0.5 * exp_mean], atol=1e-9)
    np.testing.assert_allclose(rv, [0.5 + 0.5 * exp_var * n / (n - 1)], rtol=RTOL)
    rstd = 1.0 / np.sqrt(exp_var + EPS)
    x2 = x.reshape(ROWS, ROW)
    for r in CHECK_ROWS:
        assert_close(x2[r], (row_values(r) - exp_mean) * rstd, 2e-6, "row %d" % r)


def test_huge_channel_ops_in_place(huge):
    """instance_norm and group_norm of (683, 3, ROW), rms_norm over rows and
    channel_layer_norm of (1, 2049, ROW), in place, each on a fresh fill; checked on whole
    rows at and past 2**31."""
    x = huge
    x3 = x.reshape(ROWS // 3, 3, ROW)
    x2 = x.reshape(ROWS, ROW)
    w = np.array([0.5, 1.0, 2.0], np.float32)
    b = np.array([-1.0, 0.0, 3.0], np.float32)

    fill(x)
    fastnorm.instance_norm(x3, None, None, w, b, out=x3)
    rstd = 1.0 / np.sqrt(SCALE ** 2 * VAR_S + EPS)
    for r in CHECK_ROWS:
        c = r % 3
        assert_close(x2[r], (row_values(r) - OFF[r]) * rstd[r] * w[c] + b[c], 5e-6,
                     "instance_norm row %d" % r)

    fill(x)
    fastnorm.group_norm(x3, 1, w, b, out=x3)            # groups = samples of 3 rows
    for r in CHECK_ROWS:
        rows = R[r - r % 3:r - r % 3 + 3]
        gm = OFF[rows].mean()
        gv = np.mean(SCALE[rows] ** 2) * VAR_S + OFF[rows].var()
        c = r % 3
        assert_close(x2[r], (row_values(r) - gm) / np.sqrt(gv + EPS) * w[c] + b[c], 5e-6,
                     "group_norm row %d" % r)

    fill(x)
    fastnorm.rms_norm(x2, ROW, out=x2)
    for r in CHECK_ROWS:
        ms = SCALE[r] ** 2 * VAR_S + OFF[r] ** 2
        eps32 = float(np.finfo(np.float32).eps)
        assert_close(x2[r], row_values(r) / np.sqrt(ms + eps32), 2e-6, "rms_norm row %d" % r)

    # channels-first LayerNorm across the 2049 "channels" of (1, 2049, ROW): at every
    # position the statistics run down a column with row offsets up to 2**31
    fill(x)
    xc = x.reshape(1, ROWS, ROW)
    wc = (1.0 + (R % 3)).astype(np.float32)
    bc = (R % 7 - 3.0).astype(np.float32)
    fastnorm.channel_layer_norm(xc, wc, bc, out=xc)
    cols = S[:, None] * SCALE[None, :] + OFF[None, :]        # (P, ROWS): column j % P
    m, v = cols.mean(axis=1), cols.var(axis=1)
    for r in CHECK_ROWS:
        expect = (np.tile((cols[:, r] - m) / np.sqrt(v + 1e-6), ROW // P) * wc[r] + bc[r])
        assert_close(x2[r], expect, 2e-5, "channel_layer_norm row %d" % r)
