"""python -m fastnorm: build information and a short self-check against NumPy."""
import argparse
import sys

import numpy as np

import fastnorm as fn


def self_check():
    """Each op and moments against float64 NumPy formulas on small random data."""
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(4, 6, 5, 7))
    x64 = x.astype(np.float64)

    def ref(mean, var):
        return (x64 - mean) / np.sqrt(var + 1e-5)

    checks = {
        "moments": np.max(np.abs(fn.moments(x, axis=(0, 2, 3))[1]
                                 - x64.var(axis=(0, 2, 3)))),
        "batch_norm": fn.batch_norm(x, training=True) - ref(x64.mean((0, 2, 3), keepdims=True),
                                                            x64.var((0, 2, 3), keepdims=True)),
        "instance_norm": fn.instance_norm(x) - ref(x64.mean((2, 3), keepdims=True),
                                                   x64.var((2, 3), keepdims=True)),
        "group_norm": fn.group_norm(x, 3) - ref(
            x64.reshape(4, 3, -1).mean(2)[:, :, None].repeat(70, 2).reshape(x.shape),
            x64.reshape(4, 3, -1).var(2)[:, :, None].repeat(70, 2).reshape(x.shape)),
        "layer_norm": fn.layer_norm(x, (5, 7)) - ref(x64.mean((2, 3), keepdims=True),
                                                     x64.var((2, 3), keepdims=True)),
        "rms_norm": fn.rms_norm(x, 7, eps=1e-5) - x64 / np.sqrt(
            (x64 ** 2).mean(3, keepdims=True) + 1e-5),
        "channel_layer_norm": fn.channel_layer_norm(x, eps=1e-5) - ref(
            x64.mean(1, keepdims=True), x64.var(1, keepdims=True)),
    }
    ok = True
    for name, diff in checks.items():
        err = float(np.max(np.abs(diff)))
        good = err < 1e-9
        ok &= good
        print(f"  {name:20s} max |error| {err:.2e}  {'ok' if good else 'FAILED'}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnorm", description=__doc__)
    parser.add_argument("--info", action="store_true", help="print build information only")
    args = parser.parse_args(argv)
    print("fastnorm build:")
    for key, value in fn.build_info().items():
        print(f"  {key:22s} {value}")
    if args.info:
        return 0
    print("self-check against float64 NumPy:")
    return 0 if self_check() else 1


if __name__ == "__main__":
    sys.exit(main())
