"""Kernel variants side by side: each benchmark case run in place with every variant built
here (FASTNORM_NATIVE=1 pip install . adds a -march=native one), rounds interleaved in one
process; prints median times and each variant's median per-round ratio to the first one.

    python scripts/compare_variants.py [--threads N] [--rounds R] [VARIANT ...]

With no VARIANT, all variants this CPU runs are compared (best first).
"""
import argparse
import time

import numpy as np

from fastnorm import _bench, _dispatch


def compare(variants, threads, rounds):
    base = variants[0]
    head = "".join(f"{v:>12s}" for v in variants)
    ratios = "".join(f"{v + '/' + base:>22s}" for v in variants[1:])
    print(f"{'case':42s}{head}{ratios}   (median us per call)")
    worst = {v: 0.0 for v in variants[1:]}
    for case in _bench.CASES:
        runner = _bench.Setup(case, threads).runner("fastnorm")
        t = time.perf_counter()
        runner.call()
        reps = max(1, int(0.01 / max(time.perf_counter() - t, 1e-7)))
        samples = {v: [] for v in variants}
        for k in range(rounds):
            for v in (variants if k % 2 == 0 else variants[::-1]):
                _dispatch.use_variant(v)
                if runner.reset:
                    runner.reset()
                runner.call()               # untimed: caches, sleeping threads
                t = time.perf_counter()
                for _ in range(reps):
                    runner.call()
                samples[v].append((time.perf_counter() - t) / reps)
        line = f"{case.label + ' ' + case.shape_str:42s}"
        line += "".join(f"{np.median(samples[v]) * 1e6:12.1f}" for v in variants)
        for v in variants[1:]:
            r = float(np.median(np.array(samples[v]) / np.array(samples[base])))
            worst[v] = max(worst[v], r)
            line += f"{r:22.3f}"
        print(line)
    for v, r in worst.items():
        print(f"worst {v}/{base}: {r:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*")
    p.add_argument("--threads", type=int, default=_bench.DEFAULT_THREADS)
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    variants = a.variants or _dispatch.available_variants()
    if len(variants) < 2:
        p.error(f"need two variants to compare; built here: {_dispatch.available_variants()}")
    compare(variants, a.threads, a.rounds)


if __name__ == "__main__":
    main()
