"""The kernels' cache-size thresholds (fastnorm/_cache.py): read from the running machine,
handed to every kernel variant at load, and without effect on any result.

The thresholds decide only whether the kernels prefetch the next group or rows ahead and
whether short groups are software-pipelined. Forcing every one of those on, then off,
must give the same bits (and both must match the float64 references)."""

import contextlib
import os
import shutil
import subprocess

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _cache, _dispatch
from _helpers import (assert_close_to_ref, ref_batch_norm, ref_channel_layer_norm,
                      ref_group_norm, ref_instance_norm, ref_layer_norm, ref_rms_norm,
                      rng_for)

HUGE = 2 ** 50
W4096 = np.linspace(0.5, 2, 4096)
B4096 = np.linspace(-1, 1, 4096)
NEVER = dict(prefetch_group_max=0, prefetch_channel_max=0, prefetch_min_per_thread=HUGE,
             prefetch_rows_min_per_thread=HUGE, stats_prefetch_min_per_thread=HUGE,
             stats_prefetch_group_min=HUGE, pipeline_group_max=0)
ALWAYS = dict(prefetch_group_max=HUGE, prefetch_channel_max=HUGE, prefetch_min_per_thread=0,
              prefetch_rows_min_per_thread=0, stats_prefetch_min_per_thread=0,
              stats_prefetch_group_min=0, pipeline_group_max=HUGE)
# every set of channels-last InstanceNorm/GroupNorm "beyond L2": its apply prefetches too
SETS_BEYOND_L2 = dict(ALWAYS, prefetch_channel_max=0)
# LayerNorm/RMSNorm rows longer than prefetch_group_max (up to twice it) prefetch the next
# row a line per line applied: float64 rows of 768 (6 KB), float32 rows of 4096 (16 KB)
ROWS_BY_LINES = [dict(ALWAYS, prefetch_group_max=4096), dict(ALWAYS, prefetch_group_max=8192)]
# no group pipelined, every one prefetching the next: through its statistics and the first
# half of its apply (float32; rows.pxi normalize_group_range), or through its apply alone
UNPIPELINED = [dict(ALWAYS, pipeline_group_max=0),
               dict(ALWAYS, pipeline_group_max=0, stats_prefetch_min_per_thread=HUGE,
                    stats_prefetch_group_min=HUGE)]


@contextlib.contextmanager
def tuned(module, **tuning):
    previous = module.set_cache_tuning(**tuning)
    try:
        yield
    finally:
        module.set_cache_tuning(**previous)


# ---------------------------------------------------------------------------------------
# reading the caches

def _fake_sysfs(root, entries):
    for i, (level, kind, size, shared) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
        if shared is not None:
            (d / "shared_cpu_list").write_text(f"{shared}\n")


def test_sysfs_sizes_per_sharing_cpu(tmp_path):
    _fake_sysfs(tmp_path, [(1, "Data", "48K", "0,16"), (1, "Instruction", "32K", "0,16"),
                           (2, "Unified", "2048K", "0,16"), (3, "Unified", "105M", "0-31")])
    c = _cache.detect(str(tmp_path))
    assert (c.l1d, c.l2, c.l3, c.source) == (24 * 1024, 1024 * 1024, 105 * 1024 ** 2 // 32,
                                             "sysfs")


def test_sysfs_without_sharing_lists_or_l3(tmp_path):
    _fake_sysfs(tmp_path, [(1, "Data", "32K", None), (2, "Unified", "512K", None)])
    c = _cache.detect(str(tmp_path))
    assert (c.l1d, c.l2, c.source) == (32 * 1024, 512 * 1024, "sysfs")
    assert c.l3 == _cache._DEFAULTS[3]     # what is not listed takes the default


def test_nonsense_sizes_are_bounded(tmp_path):
    _fake_sysfs(tmp_path, [(1, "Data", "1", None), (2, "Unified", "1G", None)])
    c = _cache.detect(str(tmp_path))
    assert 8 * 1024 <= c.l1d and c.l2 <= 64 * 1024 ** 2


def test_without_sysfs_the_c_library_or_defaults(tmp_path):
    c = _cache.detect(str(tmp_path / "absent"))
    assert c.source in ("libc", "default")
    assert 8 * 1024 <= c.l1d <= 1024 ** 2 and 64 * 1024 <= c.l2


def test_c_library_sizes_and_the_l3_share(tmp_path, monkeypatch):
    sizes = {1: 48 * 1024, 2: 2048 * 1024, 3: 320 * 1024 ** 2}

    class FakeCpu:
        @staticmethod
        def cache_size(level):
            return sizes[level]

    monkeypatch.setattr(_cache, "_cpu", FakeCpu)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    c = _cache.detect(str(tmp_path / "absent"))
    assert (c.l1d, c.l2, c.l3, c.source) == (48 * 1024, 2048 * 1024, 40 * 1024 ** 2, "libc")


@pytest.mark.skipif(shutil.which("lscpu") is None or not os.path.isdir(_cache._SYSFS),
                    reason="needs Linux sysfs and util-linux lscpu as the reference")
def test_this_machine_agrees_with_lscpu():
    out = subprocess.run(["lscpu", "--caches=NAME,ONE-SIZE", "--bytes"], capture_output=True,
                         text=True, check=True).stdout.split("\n")[1:]
    sizes = dict(line.split() for line in out if line.strip())
    c = _cache.detect()
    assert c.source == "sysfs"
    assert c.l1d <= int(sizes["L1d"]) and int(sizes["L1d"]) % c.l1d == 0
    assert c.l2 <= int(sizes["L2"]) and int(sizes["L2"]) % c.l2 == 0


def test_thresholds_follow_the_caches():
    small = _cache.tuning_for(_cache.CacheSizes(32 * 1024, 512 * 1024, 16 * 1024 ** 2, "x"))
    large = _cache.tuning_for(_cache.CacheSizes(48 * 1024, 2048 * 1024, 32 * 1024 ** 2, "x"))
    assert set(small) == set(NEVER)
    for name in small:
        assert 0 < small[name] < large[name], name
    # the group applied and the one prefetched fit L1 (groups) and L2 (channels)
    assert 2 * small["prefetch_channel_max"] <= 512 * 1024
    assert 4 * small["pipeline_group_max"] <= 32 * 1024
    # rows (one stream each) are prefetched from further out than the column sweeps
    assert small["prefetch_rows_min_per_thread"] >= small["prefetch_min_per_thread"]
    # the statistics ask for the next group from memory (beyond the L3 share), or for
    # groups that L1 does not hold
    assert small["stats_prefetch_min_per_thread"] >= small["prefetch_rows_min_per_thread"]
    assert small["stats_prefetch_group_min"] == 32 * 1024


@pytest.mark.parametrize("variant", _dispatch.available_variants())
def test_every_variant_gets_this_machines_thresholds(variant):
    with _dispatch.using(variant) as module:
        assert module.cache_tuning() == _cache.tuning_for(_cache.CACHES)
    info = fn.build_info()
    assert info["cache_tuning"] == _cache.TUNING
    assert info["caches"]["l2"] == _cache.CACHES.l2


def test_negative_threshold_is_refused():
    module = _dispatch.kernels()
    before = module.cache_tuning()
    with pytest.raises(ValueError, match="pipeline_group_max"):
        module.set_cache_tuning(**dict(before, pipeline_group_max=-1))
    assert module.cache_tuning() == before


# ---------------------------------------------------------------------------------------
# no effect on results

def _nhwc(a):
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)


def _cases():
    """(id, call(x, num_threads), reference(x), shape): shapes on both sides of every
    threshold once forced (rows of 768 and 4096 values, channels of 16 KB, column sets)."""
    def bn_train(x, t):
        return fn.batch_norm(x, training=True, num_threads=t)

    def bn_eval(x, t):
        C = x.shape[1]
        return fn.batch_norm(x, np.linspace(-1, 1, C), np.linspace(0.5, 2, C),
                             training=False, num_threads=t)

    def bn_eval_ref(x):
        C = x.shape[1]
        return ref_batch_norm(x, np.linspace(-1, 1, C), np.linspace(0.5, 2, C))[0]

    return [
        ("layer_norm_768", lambda x, t: fn.layer_norm(x, (768,), num_threads=t),
         lambda x: ref_layer_norm(x, (768,))[0], (96, 768), False),
        ("layer_norm_4096", lambda x, t: fn.layer_norm(x, (4096,), num_threads=t),
         lambda x: ref_layer_norm(x, (4096,))[0], (24, 4096), False),
        # affine rows: in pairs, an odd row left (NEVER), a line-by-line prefetch applying
        # w and b too (ROWS_BY_LINES)
        ("layer_norm_4096_affine",
         lambda x, t: fn.layer_norm(x, (4096,), W4096, B4096, num_threads=t),
         lambda x: ref_layer_norm(x, (4096,), W4096, B4096)[0], (25, 4096), False),
        ("layer_norm_4096_bias",
         lambda x, t: fn.layer_norm(x, (4096,), None, B4096, num_threads=t),
         lambda x: ref_layer_norm(x, (4096,), None, B4096)[0], (25, 4096), False),
        ("rms_norm_768_weight", lambda x, t: fn.rms_norm(x, (768,), W4096[:768], 1e-5,
                                                          num_threads=t),
         lambda x: ref_rms_norm(x, (768,), W4096[:768], eps=1e-5), (96, 768), False),
        ("batch_norm_train", bn_train, lambda x: ref_batch_norm(x, training=True)[0],
         (4, 24, 32, 32), False),
        ("batch_norm_train_nhwc", bn_train, lambda x: ref_batch_norm(x, training=True)[0],
         (4, 24, 32, 32), True),
        ("batch_norm_eval_nhwc", bn_eval, bn_eval_ref, (4, 64, 32, 32), True),
        # rows too wide for registers: the vector sweeps of whole vectors (272 channels) and
        # the loops of stats.pxi / _apply.h for the rest (200: not whole AVX-512 vectors)
        ("batch_norm_train_nhwc_272", bn_train, lambda x: ref_batch_norm(x, training=True)[0],
         (2, 272, 12, 12), True),
        ("batch_norm_eval_nhwc_272", bn_eval, bn_eval_ref, (2, 272, 12, 12), True),
        ("batch_norm_train_nhwc_200", bn_train, lambda x: ref_batch_norm(x, training=True)[0],
         (2, 200, 12, 12), True),
        ("batch_norm_eval_nhwc_200", bn_eval, bn_eval_ref, (2, 200, 12, 12), True),
        # one set of 7200 rows: statistics by chunks of rows shared out, then (2 threads)
        # each thread applies its own rows, last to first when apply_backward says
        # (apply.pxi: apply_all_row_spans after_chunk_stats): rows of whole vectors, rows
        # in registers (64 channels with AVX-512), two column blocks (528 channels)
        ("batch_norm_train_nhwc_272_chunks", bn_train,
         lambda x: ref_batch_norm(x, training=True)[0], (1, 272, 90, 80), True),
        ("batch_norm_train_nhwc_64_chunks", bn_train,
         lambda x: ref_batch_norm(x, training=True)[0], (2, 64, 60, 60), True),
        ("batch_norm_train_nhwc_528_chunks", bn_train,
         lambda x: ref_batch_norm(x, training=True)[0], (1, 528, 90, 80), True),
        ("group_norm_nhwc_256_chunks", lambda x, t: fn.group_norm(x, 8, num_threads=t),
         lambda x: ref_group_norm(x, 8)[0], (1, 256, 90, 80), True),
        ("instance_norm", lambda x, t: fn.instance_norm(x, num_threads=t),
         lambda x: ref_instance_norm(x)[0], (4, 24, 32, 32), False),
        ("instance_norm_nhwc", lambda x, t: fn.instance_norm(x, num_threads=t),
         lambda x: ref_instance_norm(x)[0], (4, 24, 32, 32), True),
        ("instance_norm_nhwc_272", lambda x, t: fn.instance_norm(x, num_threads=t),
         lambda x: ref_instance_norm(x)[0], (4, 272, 9, 11), True),
        # groups of runs prefetching the next group a line per line applied (runs of 99
        # values: lines the steps leave; affine: a per channel)
        ("group_norm_affine", lambda x, t: fn.group_norm(
            x, 4, np.linspace(0.5, 2, x.shape[1]), np.linspace(-1, 1, x.shape[1]),
            num_threads=t),
         lambda x: ref_group_norm(x, 4, np.linspace(0.5, 2, x.shape[1]),
                                  np.linspace(-1, 1, x.shape[1]))[0], (5, 12, 9, 11), False),
        ("instance_norm_runs_99", lambda x, t: fn.instance_norm(x, num_threads=t),
         lambda x: ref_instance_norm(x)[0], (3, 12, 9, 11), False),
        ("group_norm_nhwc", lambda x, t: fn.group_norm(x, 4, num_threads=t),
         lambda x: ref_group_norm(x, 4)[0], (4, 32, 16, 16), True),
        ("channel_layer_norm", lambda x, t: fn.channel_layer_norm(x, num_threads=t),
         lambda x: ref_channel_layer_norm(x), (4, 96, 16, 16), False),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("variant", _dispatch.available_variants())
def test_thresholds_change_no_bits(case, dtype, variant):
    name, call, ref, shape, nhwc = case
    x = (rng_for(name, dtype).standard_normal(shape) * 2 + 3).astype(dtype)
    if nhwc:
        x = _nhwc(x)
    with _dispatch.using(variant) as module:
        results = []
        for tuning in (NEVER, ALWAYS, SETS_BEYOND_L2, *ROWS_BY_LINES, *UNPIPELINED):
            with tuned(module, **tuning):
                results += [call(x.copy(order="K"), t) for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert_close_to_ref(results[0], ref(x.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", _dispatch.available_variants())
def test_one_set_apply_after_chunk_statistics(variant, dtype):
    """Channels-last BatchNorm training of one set of 12 chunks of rows (the apply follows
    each thread's share of the statistics, backward or forward by the thresholds): in place,
    into another channels-last buffer and allocating, with running statistics of either
    float dtype, the same bits for 1-3 threads and every threshold, and the float64 formula."""
    x = _nhwc((rng_for("one set chunks", dtype).standard_normal((3, 96, 64, 64)) * 2 + 3)
              .astype(dtype))
    w = np.linspace(0.5, 1.5, 96).astype(dtype)
    b = np.linspace(-1, 1, 96).astype(dtype)
    ref, ref_rm, ref_rv = ref_batch_norm(x.astype(np.float64), np.zeros(96), np.ones(96), w, b,
                                         training=True)
    with _dispatch.using(variant) as module:
        for stat_dtype in (np.float32, np.float64):
            results = []
            for tuning in (NEVER, ALWAYS, SETS_BEYOND_L2):
                with tuned(module, **tuning):
                    for t in (1, 2, 3):
                        for mode in ("none", "inplace", "other"):
                            rm = np.zeros(96, stat_dtype)
                            rv = np.ones(96, stat_dtype)
                            xin = x.copy(order="K")
                            out = {"none": None, "inplace": xin,
                                   "other": _nhwc(np.empty(x.shape, dtype))}[mode]
                            y = fn.batch_norm(xin, rm, rv, w, b, training=True, out=out,
                                              num_threads=t)
                            assert y.strides == x.strides
                            if mode == "other":
                                np.testing.assert_array_equal(xin, x)   # input untouched
                            else:
                                assert (y is xin) == (mode == "inplace")
                            results.append((y, rm, rv))
            for y, rm, rv in results[1:]:
                np.testing.assert_array_equal(y, results[0][0])
                np.testing.assert_array_equal(rm, results[0][1])
                np.testing.assert_array_equal(rv, results[0][2])
            assert_close_to_ref(results[0][0], ref, dtype)
            np.testing.assert_allclose(results[0][1], ref_rm, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(results[0][2], ref_rv, rtol=1e-5, atol=1e-6)
