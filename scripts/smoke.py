"""Smoke test of an *installed* fastnorm: every op on small data, checked against the float64
NumPy formulas it ships (fastnorm._reference). Small and dependency-free (NumPy only) so that
it runs under an emulator (scripts/qemu_smoke.sh runs it under qemu-x86_64 with CPU models
without AVX2/AVX-512).

    python scripts/smoke.py [-q] [--expect-variant NAME] [--threads N]
    python scripts/smoke.py --run-variant NAME     # negative control, see below

Prints fastnorm.build_info() (kernel_variant is the variant the dispatcher chose for this
CPU), then one line per check. Exit status: 0 all good, 1 a check failed, 2 the chosen
variant is not --expect-variant.

--run-variant NAME makes NAME the current variant even when the CPU lacks its instruction
set (bypassing the dispatcher's CPU check) and runs the checks: on a CPU without those
instructions this must die with SIGILL. qemu_smoke.sh uses it to show that the emulated CPU
really rejects AVX2, so that a passing baseline run means something.

Run it from outside the source tree (the repository's fastnorm/ has no compiled kernels).
"""
import argparse
import sys

import numpy as np

import fastnorm as fn
from fastnorm import _dispatch
from fastnorm._reference import (ref_batch_norm, ref_channel_layer_norm, ref_group_norm,
                                 ref_instance_norm, ref_layer_norm, ref_moments, ref_rms_norm)

# max |error| allowed against the float64 formula, for normalized outputs of size ~1-5
TOL = {np.float64: 1e-10, np.float32: 5e-5, np.float16: 8e-3}
STAT_RTOL = {np.float64: 1e-12, np.float32: 2e-6}

failures = []
checked = []        # names of the checks run (failed or not)
VERBOSE = True


def check(name, got, want, tol):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        failures.append(name)
        checked.append(name)
        print(f"  {name:48s} FAILED: shape {got.shape} != {want.shape}", flush=True)
        return
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    ok = err <= tol and np.all(np.isfinite(got) == np.isfinite(want))
    checked.append(name)
    if not ok:
        failures.append(name)
    if VERBOSE or not ok:
        print(f"  {name:48s} max |error| {err:.1e} (tol {tol:.0e})  "
              f"{'ok' if ok else 'FAILED'}", flush=True)


def stat_check(name, got, want, dtype):
    want = np.asarray(want, dtype=np.float64)
    scale = max(float(np.max(np.abs(want))), 1e-300) if want.size else 1.0
    check(name, got, want, STAT_RTOL[dtype] * scale)


def data(rng, shape, dtype, loc=3.0, scale=2.0):
    return (rng.standard_normal(shape) * scale + loc).astype(dtype)


def run_checks(dtype, threads):
    rng = np.random.default_rng(20240611)
    tol = TOL[dtype]
    tag = f"{np.dtype(dtype).name}, {threads} thread(s)"
    kw = {"num_threads": threads}
    n, c, h, w = 4, 6, 9, 11          # odd sizes: vector loops plus their scalar tails
    x = data(rng, (n, c, h, w), dtype)
    weight = rng.uniform(0.5, 1.5, c).astype(dtype)
    bias = rng.uniform(-1.0, 1.0, c).astype(dtype)
    eps = 1e-5

    # BatchNorm, training: batch statistics, running statistics updated (unbiased var)
    rm, rv = rng.uniform(-1, 1, c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    want, want_rm, want_rv = ref_batch_norm(x, rm, rv, weight, bias, True, 0.1, eps)
    y = fn.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=eps, **kw)
    check(f"batch_norm training [{tag}]", y, want, tol)
    stat_check(f"batch_norm running_mean [{tag}]", rm, want_rm, dtype)
    stat_check(f"batch_norm running_var [{tag}]", rv, want_rv, dtype)

    # BatchNorm, eval: the running statistics normalize
    y = fn.batch_norm(x, rm, rv, weight, bias, training=False, eps=eps, **kw)
    want = ref_batch_norm(x, rm, rv, weight, bias, False, eps=eps)[0]
    check(f"batch_norm eval [{tag}]", y, want, tol)

    # BatchNorm on (N, C), in place
    x2 = data(rng, (37, c), dtype)
    want = ref_batch_norm(x2, training=True, eps=eps)[0]
    y = fn.batch_norm(x2, training=True, out=x2, **kw)
    check(f"batch_norm (N, C) in place [{tag}]", x2, want, tol)
    if y is not x2:
        failures.append("batch_norm out=x identity")

    # InstanceNorm with running statistics, then with them (use_input_stats=False)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    want, want_rm, want_rv = ref_instance_norm(x, rm, rv, weight, bias, True, 0.1, eps)
    y = fn.instance_norm(x, rm, rv, weight, bias, use_input_stats=True, momentum=0.1,
                         eps=eps, **kw)
    check(f"instance_norm [{tag}]", y, want, tol)
    stat_check(f"instance_norm running_mean [{tag}]", rm, want_rm, dtype)
    stat_check(f"instance_norm running_var [{tag}]", rv, want_rv, dtype)
    y = fn.instance_norm(x, rm, rv, use_input_stats=False, eps=eps, **kw)
    want = ref_instance_norm(x, rm, rv, use_input_stats=False, eps=eps)[0]
    check(f"instance_norm running stats [{tag}]", y, want, tol)

    # GroupNorm, with its statistics
    g = 3
    y, mean, rstd = fn.group_norm(x, g, weight, bias, eps=eps, return_stats=True, **kw)
    want, want_mean, want_rstd = ref_group_norm(x, g, weight, bias, eps)
    check(f"group_norm [{tag}]", y, want, tol)
    stat_check(f"group_norm mean [{tag}]", mean, want_mean, dtype)
    stat_check(f"group_norm rstd [{tag}]", rstd, want_rstd, dtype)

    # LayerNorm over (H, W), in place; and over a long row (several statistics chunks)
    lw = rng.uniform(0.5, 1.5, (h, w)).astype(dtype)
    lb = rng.uniform(-1.0, 1.0, (h, w)).astype(dtype)
    xl = x.copy()
    fn.layer_norm(xl, (h, w), lw, lb, eps=eps, out=xl, **kw)
    check(f"layer_norm in place [{tag}]", xl, ref_layer_norm(x, (h, w), lw, lb, eps)[0], tol)
    xr = data(rng, (3, 5000), dtype, loc=-20.0, scale=0.5)
    y = fn.layer_norm(xr, 5000, eps=eps, **kw)
    check(f"layer_norm (3, 5000) [{tag}]", y, ref_layer_norm(xr, 5000, eps=eps)[0], tol)

    # RMSNorm, eps=None means finfo(dtype).eps
    rw = rng.uniform(0.5, 1.5, w).astype(dtype)
    y = fn.rms_norm(x, w, rw, **kw)
    check(f"rms_norm [{tag}]", y, ref_rms_norm(x, w, rw), tol)

    # channels-first LayerNorm (ConvNeXt), 4-D and (N, C)
    y = fn.channel_layer_norm(x, weight, bias, eps=1e-6, **kw)
    check(f"channel_layer_norm [{tag}]", y, ref_channel_layer_norm(x, weight, bias, 1e-6), tol)
    y = fn.channel_layer_norm(x2, eps=1e-6, **kw)
    check(f"channel_layer_norm (N, C) [{tag}]", y, ref_channel_layer_norm(x2, eps=1e-6), tol)

    # moments
    mean, var = fn.moments(x, axis=(0, 2, 3), ddof=1, dtype=np.float64, **kw)
    want_mean, want_var = ref_moments(x, axis=(0, 2, 3), ddof=1)
    stat_check(f"moments mean [{tag}]", mean, want_mean, dtype)
    stat_check(f"moments var ddof=1 [{tag}]", var, want_var, dtype)
    mean, var = fn.moments(x, axis=-1, keepdims=True, **kw)
    stat_check(f"moments axis=-1 keepdims [{tag}]", var,
               np.expand_dims(ref_moments(x, axis=-1)[1], -1), dtype)
    mean, var = fn.moments(xr, **kw)
    stat_check(f"moments axis=None [{tag}]", var, ref_moments(xr)[1], dtype)

    # Moments: streaming and merged
    flat = x.reshape(n * c, h * w)
    acc = fn.Moments(axis=0)
    for batch in np.array_split(flat, 3):
        acc.update(batch, **kw)
    other = fn.Moments(axis=0).update(flat[:5], **kw)
    both = acc + other
    ref = np.concatenate([flat, flat[:5]])
    want_mean, want_var = ref_moments(ref, axis=0, ddof=1)
    check(f"Moments count [{tag}]", both.count, ref.shape[0], 0)
    stat_check(f"Moments mean [{tag}]", both.mean, want_mean, dtype)
    stat_check(f"Moments var ddof=1 [{tag}]", both.var(ddof=1), want_var, dtype)
    if not VERBOSE:
        print(f"  {tag}: {sum(1 for k in checked if tag in k)} checks, "
              f"{sum(1 for k in failures if tag in k)} failed", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--expect-variant", metavar="NAME",
                   help="fail (exit 2) unless the dispatcher chose this kernel variant")
    p.add_argument("--threads", type=int, default=2, help="thread count of the second pass")
    p.add_argument("--run-variant", metavar="NAME",
                   help="negative control: run the checks with this variant even if the CPU "
                        "lacks its instructions (expect SIGILL on such a CPU)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="one line per dtype and thread count instead of one per check")
    args = p.parse_args(argv)
    global VERBOSE
    VERBOSE = not args.quiet

    info = fn.build_info()
    print("fastnorm smoke test")
    for key in ("version", "machine", "openmp", "max_threads", "cpu_x86_64_level",
                "available_variants", "kernel_variant"):
        print(f"  {key:20s} {info[key]}")
    print(f"  {'installed at':20s} {fn.__file__}", flush=True)
    if args.expect_variant and info["kernel_variant"] != args.expect_variant:
        print(f"FAILED: kernel variant {info['kernel_variant']!r} was chosen, expected "
              f"{args.expect_variant!r}")
        return 2
    if args.run_variant:
        name = args.run_variant
        if _dispatch.load(name) is None:
            print(f"FAILED: kernel variant {name!r} is not built in this installation")
            return 1
        _dispatch.use_variant(name, check_cpu=False)    # bypasses the CPU check on purpose
        print(f"  running the checks with kernel variant {name} "
              f"(CPU level {info['cpu_x86_64_level']})", flush=True)

    for dtype in (np.float32, np.float64):
        for threads in sorted({1, args.threads}):
            run_checks(dtype, threads)
    xh = (np.random.default_rng(1).standard_normal((4, 64)) * 2 + 1).astype(np.float16)
    y = fn.layer_norm(xh, 64)
    check("layer_norm float16", y, ref_layer_norm(xh, 64)[0], TOL[np.float16])
    if y.dtype != np.float16:
        failures.append("layer_norm float16 dtype")

    if failures:
        print(f"smoke: {len(failures)} of {len(checked)} checks FAILED: {', '.join(failures)}")
        return 1
    print(f"smoke: all {len(checked)} checks passed with kernel variant "
          f"{_dispatch.current_variant()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
