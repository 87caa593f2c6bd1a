"""fastnorm.dask and python -m fastnorm stats against the usual ways, on a 2-worker cluster.

    python benchmarks/dask_stats.py [--quick] [--json]

1. Per-channel mean and variance of a persisted float32 dask array (N, C, H, W) on a
   LocalCluster(n_workers=2, threads_per_worker=1, processes=True): fastnorm.dask.moments
   (one pass, float64 block statistics) against dask.compute(x.mean(axis), x.var(axis))
   (two reductions), rounds interleaved, medians.
2. Images per second of `python -m fastnorm stats FOLDER` (threaded scheduler, then the
   cluster) over a folder of PNGs, against a plain Pillow + NumPy loop in one process
   (per-channel sums of x and x**2 in float64, the usual dataset-statistics loop).

Each measurement checks its result against float64 NumPy first. Prints the CPU model.
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def _median_time(fn, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def bench_moments(client, shape, chunks, rounds):
    """(fastnorm seconds, dask seconds, max relative errors) on one persisted array."""
    import dask
    import dask.array as da
    import fastnorm.dask as fnd
    rng = da.random.default_rng(0)
    x = (rng.standard_normal(shape, chunks=chunks, dtype=np.float32) * 0.5 + 3.0)
    x = x.astype(np.float32)
    x = client.persist(x)
    from distributed import wait
    wait(x)
    axis = (0, 2, 3)
    ref_var = x.astype(np.float64).var(axis=axis).compute()   # float64 reference, dask

    def ours():
        return dask.compute(*fnd.moments(x, axis))

    def theirs():
        return dask.compute(x.mean(axis=axis), x.var(axis=axis))

    errors = {}
    for name, fn in (("fastnorm", ours), ("dask", theirs)):
        var = fn()[1].astype(np.float64)
        errors[name] = float(np.max(np.abs(var - ref_var) / ref_var))
    # accuracy (not timed) on the same array moved to mean 1e4, std 0.01 (still float32)
    offset = (x * np.float32(0.02) + np.float32(1e4)).astype(np.float32)
    ref_offset = offset.astype(np.float64).var(axis=axis).compute()
    for name, var in (("fastnorm", fnd.moments(offset, axis)[1]),
                      ("dask", offset.var(axis=axis))):
        var = var.compute().astype(np.float64)
        errors[name + " at mean 1e4, std 0.01"] = float(
            np.max(np.abs(var - ref_offset) / ref_offset))
    ours_t, theirs_t = [], []
    for _ in range(rounds):              # interleaved rounds
        ours_t.append(_median_time(ours, 1)[0])
        theirs_t.append(_median_time(theirs, 1)[0])
    return statistics.median(ours_t), statistics.median(theirs_t), errors, x.nbytes


def make_pngs(folder, count, size, rng):
    from PIL import Image
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):      # smooth content with noise: compresses like photographs
        base = (np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
                + rng.normal(0, 12, (h, w, 3)) + i % 17)
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"{i:05d}.png"))


def plain_loop(files):
    """The usual loop: decode with Pillow, per-channel sums of x and x**2 in float64."""
    from PIL import Image
    n, s1, s2 = 0, np.zeros(3), np.zeros(3)
    for path in files:
        with Image.open(path) as img:
            x = np.asarray(img, dtype=np.float64).reshape(-1, 3)
        n += x.shape[0]
        s1 += x.sum(axis=0)
        s2 += (x * x).sum(axis=0)
    mean = s1 / n
    return mean, np.sqrt(s2 / n - mean * mean)


def run_cli(folder, scheduler):
    from fastnorm.__main__ import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["stats", folder, "--json", "--scheduler", scheduler])
    assert code == 0
    return json.loads(out.getvalue())


def bench_images(folder, client_address, rounds):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    from PIL import Image
    values = np.concatenate([np.asarray(Image.open(f)).reshape(-1, 3) for f in files]
                            ).astype(np.float64)
    ref_mean, ref_std = values.mean(axis=0), values.std(axis=0)
    doc = run_cli(folder, "threads")
    assert np.allclose(doc["mean"], ref_mean, rtol=1e-12)
    assert np.allclose(doc["std"], ref_std, rtol=1e-12)
    mean, std = plain_loop(files)
    loop_err = float(np.max(np.abs(std - ref_std) / ref_std))
    results = {}
    targets = [("plain Pillow + NumPy loop", lambda: plain_loop(files)),
               ("fastnorm stats, threads", lambda: run_cli(folder, "threads"))]
    if client_address:
        targets.append(("fastnorm stats, 2-worker cluster",
                        lambda: run_cli(folder, client_address)))
    times = {name: [] for name, _ in targets}
    for _, fn in targets:            # warm-up (imports in the workers, file cache)
        fn()
    for _ in range(rounds):
        for name, fn in targets:
            times[name].append(_median_time(fn, 1)[0])
    for name, _ in targets:
        results[name] = len(files) / statistics.median(times[name])
    return results, loop_err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import dask
    import distributed
    import fastnorm
    from fastnorm._bench.machine import cpu_model
    if args.quick:
        shape, chunks, rounds, images, size = (16, 3, 64, 64), (4, 3, 64, 64), 3, 24, (64, 64)
    else:
        shape, chunks, rounds = (256, 3, 256, 256), (16, 3, 256, 256), 7
        images, size = 400, (256, 256)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    doc = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "fastnorm": fastnorm.__version__,
           "dask": dask.__version__, "distributed": distributed.__version__,
           "numpy": np.__version__}
    try:
        with distributed.Client(cluster) as client:        # the default scheduler
            ours, theirs, errors, nbytes = bench_moments(client, shape, chunks, rounds)
            doc["moments"] = {"shape": shape, "chunks": chunks, "MB": nbytes / 1e6,
                              "fastnorm_s": ours, "dask_s": theirs,
                              "speedup": theirs / ours, "var_relative_error": errors}
            with tempfile.TemporaryDirectory() as folder:
                make_pngs(folder, images, size, np.random.default_rng(1))
                rates, loop_err = bench_images(folder, cluster.scheduler_address, rounds)
            doc["images"] = {"count": images, "size": size, "images_per_s": rates,
                             "plain_loop_std_relative_error": loop_err}
    finally:
        cluster.close()
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
        return 0
    m = doc["moments"]
    print(f"CPU: {doc['cpu']} ({doc['cpu_count']} cores); fastnorm {doc['fastnorm']}, "
          f"dask {doc['dask']}, distributed {doc['distributed']}, NumPy {doc['numpy']}")
    print(f"\nper-channel mean+var of a persisted float32 {m['shape']} array "
          f"({m['MB']:.0f} MB, chunks {m['chunks']}), 2-worker LocalCluster, medians:")
    print(f"  fastnorm.dask.moments                   {m['fastnorm_s'] * 1e3:9.1f} ms  "
          f"(var rel. error {m['var_relative_error']['fastnorm']:.1e})")
    print(f"  dask.compute(x.mean(axis), x.var(axis)) {m['dask_s'] * 1e3:9.1f} ms  "
          f"(var rel. error {m['var_relative_error']['dask']:.1e})")
    print(f"  speed-up: {m['speedup']:.2f}x")
    e = m["var_relative_error"]
    print(f"  the same array at mean 1e4, std 0.01: var rel. error fastnorm.dask "
          f"{e['fastnorm at mean 1e4, std 0.01']:.1e}, dask {e['dask at mean 1e4, std 0.01']:.1e}")
    i = doc["images"]
    print(f"\nimages per second over {i['count']} PNGs of {i['size'][0]}x{i['size'][1]} RGB:")
    for name, rate in i["images_per_s"].items():
        print(f"  {name:34s} {rate:8.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
