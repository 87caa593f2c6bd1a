"""Accuracy of fastnorm's variance over a grid of |mean|/std (condition of the data).

For each case (moments over several axis layouts, the streaming Moments accumulator over many
small batches, and the running variance of batch_norm in training) and each |mean|/std of
1, 1e2, ..., 1e12, in float64 and float32 data, prints the worst relative error of the
variance against a long-double two-pass reference computed from the very same input values,
for fastnorm and for NumPy side by side, and their ratio (fastnorm / NumPy).

- float64 data: fastnorm with its default dtype; NumPy `np.var` in float64.
- float32 data: fastnorm with `dtype=np.float64` (batch_norm: float64 running statistics);
  NumPy `np.var` of the float64 cast of the same float32 values.
- Reference: the values' variance, two-pass in np.longdouble with the mean refined once
  (math.fsum where long double is no wider than float64).
- batch_norm runs with momentum=1.0, so running_var is the unbiased batch variance.
- float32 data cannot hold |mean|/std beyond about 2**24 (the spread rounds away), so its
  grid stops at 1e7; the "values" column gives the ratio the (rounded) data actually has,
  and a row whose reference variance is 0 somewhere prints n/a.
- A "torch" column (optional, when torch is installed) gives torch's float64 batch_norm
  running variance error for float64 data.

NumPy only (torch optional); runs in a few seconds.

    python scripts/stats_accuracy.py
"""
import sys
import zlib

import numpy as np

import fastnorm as fn
from fastnorm._reference import LD_EXTENDED, ref_var_exact

try:
    import torch
except ImportError:          # optional
    torch = None

RATIOS = {"float64": [10.0 ** k for k in range(0, 13, 2)],
          # float32 holds no spread below |mean| * 2**-24 (|mean|/std beyond ~1.7e7)
          "float32": [1.0, 1e2, 1e4, 1e6, 1e7]}


# NumPy errors below one float64 ulp count as one ulp in the ratio
FLOOR = float(np.finfo(np.float64).eps)

def rel_err(got, ref):
    """Worst relative error; None when the reference variance is 0 somewhere."""
    got = np.asarray(got, dtype=np.longdouble)
    ref = np.asarray(ref, dtype=np.longdouble)
    if not np.all(ref > 0):
        return None
    return float(np.max(np.abs(got - ref) / ref))


def data(rng, shape, ratio, kind):
    """Normal data with |mean|/std = ratio: float64 with std 1; float32 with mean 1e4 (and
    std 1e4/ratio), so the float32 values keep the spread as far as float32 can."""
    z = rng.standard_normal(shape)
    if kind == "float64":
        return z + ratio
    mean = 1e4
    return (mean + (mean / ratio) * z).astype(np.float32)


def case_moments(shape, axis):
    def run(x):
        if x.dtype == np.float64:
            got = fn.moments(x, axis)[1]
        else:
            got = fn.moments(x, axis, dtype=np.float64)[1]
        ref = ref_var_exact(x, axis)
        return got, np.var(x.astype(np.float64), axis=axis), ref, None
    return "moments %s axis=%s" % (shape, axis), shape, run


def case_accumulator(bshape, nbatch, axis):
    shape = (bshape[0] * nbatch,) + bshape[1:]

    def run(x):
        acc = fn.Moments(axis=axis)
        for b in np.split(x, nbatch, axis=0):
            acc.update(b)
        ref = ref_var_exact(x, axis)
        return acc.var(), np.var(x.astype(np.float64), axis=axis), ref, None
    return "Moments %dx%s axis=%s" % (nbatch, bshape, axis), shape, run


def case_batch_norm(shape):
    axes = (0,) + tuple(range(2, len(shape)))

    def run(x):
        c = shape[1]
        rm, rv = np.zeros(c), np.ones(c)
        fn.batch_norm(x, rm, rv, training=True, momentum=1.0)
        ref = ref_var_exact(x, axes, ddof=1)
        peer = None
        if torch is not None and x.dtype == np.float64:
            trm = torch.zeros(c, dtype=torch.float64)
            trv = torch.ones(c, dtype=torch.float64)
            torch.nn.functional.batch_norm(torch.from_numpy(x), trm, trv, training=True,
                                           momentum=1.0)
            peer = trv.numpy()
        return rv, np.var(x.astype(np.float64), axis=axes, ddof=1), ref, peer
    return "batch_norm running_var %s" % (shape,), shape, run


def case_instance_norm(shape):
    spatial = tuple(range(2, len(shape)))

    def run(x):
        c = shape[1]
        rm, rv = np.zeros(c), np.ones(c)
        fn.instance_norm(x, rm, rv, use_input_stats=True, momentum=1.0)
        ref = ref_var_exact(x, spatial, ddof=1).mean(axis=0)
        npv = np.var(x.astype(np.float64), axis=spatial, ddof=1).mean(axis=0)
        return rv, npv, ref, None
    return "instance_norm running_var %s" % (shape,), shape, run


CASES = [
    case_moments((30000,), None),
    case_moments((20, 1000), 1),
    case_moments((1000, 20), 0),
    case_moments((3000, 2), 0),
    case_moments((50, 7, 3), (0, 2)),
    case_moments((64, 16, 2), (0, 2)),
    case_moments((6, 500, 5), 1),
    case_accumulator((4, 7), 100, 0),
    case_accumulator((100,), 100, None),
    case_batch_norm((64, 16, 2)),
    case_batch_norm((8, 16, 4, 4)),
    case_batch_norm((256, 16)),
    case_instance_norm((2, 4, 5000)),
]


def actual_ratio(x):
    """max |mean|/std of the values over the whole array ("inf": all values equal)."""
    xl = np.asarray(x, dtype=np.longdouble)
    sd = float(np.sqrt(ref_var_exact(x.reshape(-1))))
    return "inf" if sd == 0 else "%9.1e" % (abs(float(xl.mean())) / sd)


def fmt(v):
    return "%10s" % "n/a" if v is None else "%10.2e" % v


def main():
    print("fastnorm %s, NumPy %s%s; long double %s"
          % (fn.__version__, np.__version__,
             ", torch %s" % torch.__version__ if torch is not None else "",
             "extended (%d-bit mantissa)" % (np.finfo(np.longdouble).nmant + 1)
             if LD_EXTENDED else "= float64 (math.fsum reference)"))
    print("relative error of the variance vs the long-double reference of the same values; "
          "ratio = fastnorm / NumPy")
    header = "%-38s %-8s %9s %9s %10s %10s %10s %10s" % (
        "case", "data", "|mean|/s", "values", "fastnorm", "numpy", "ratio", "torch")
    print(header)
    print("-" * len(header))
    worst = {}
    for name, shape, run in CASES:
        for kind in ("float64", "float32"):
            for ratio in RATIOS[kind]:
                rng = np.random.default_rng(zlib.crc32(repr((name, kind, ratio)).encode()))
                x = data(rng, shape, ratio, kind)
                got, npv, ref, peer = run(x)
                e_fn, e_np = rel_err(got, ref), rel_err(npv, ref)
                e_peer = rel_err(peer, ref) if peer is not None else None
                if e_fn is None or e_np is None:
                    ratio_s = "%10s" % "n/a"
                else:
                    r = e_fn / max(e_np, FLOOR)
                    ratio_s = "%10.3g" % r
                    key = (name, kind)
                    worst[key] = max(worst.get(key, 0.0), r)
                print("%-38s %-8s %9.0e %9s %s %s %s %s" % (
                    name, kind, ratio, actual_ratio(x), fmt(e_fn), fmt(e_np), ratio_s,
                    fmt(e_peer) if peer is not None else "%10s" % "-"))
        print()
    print("worst ratio fastnorm/NumPy per case (NumPy errors floored at one float64 ulp, "
          "2.2e-16: where NumPy happens to be exact, a few ulps is not a loss of digits):")
    for (name, kind), r in worst.items():
        flag = "" if r <= 10 else "   <-- more than 10x NumPy's error"
        print("  %-38s %-8s %10.3g%s" % (name, kind, r, flag))
    print("float32 grid stops at 1e7 (no spread below |mean| * 2**-24 survives the rounding); "
          "'values' is the |mean|/std the data actually has; n/a: a reference variance is 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
