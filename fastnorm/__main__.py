"""python -m fastnorm: build information, a self-check against NumPy, and the benchmark table.

Each benchmark case times fastnorm in place (out=x) and allocating (out=None), plain float32
NumPy, the roof (one in-place pass x = a*x + b over the same bytes with the same threads) and,
when installed, PyTorch and ONNX Runtime, all in one process with rounds interleaved; the
figures are medians. Exits non-zero if the self-check or a benchmark's correctness check fails.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

import fastnorm as fn


def self_check(verbose=True):
    """Each op and moments against float64 NumPy formulas on small random data.
    Returns (ok, {name: max |error|})."""
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
    errors = {}
    for name, diff in checks.items():
        err = float(np.max(np.abs(diff)))
        good = err < 1e-9
        ok &= good
        errors[name] = err
        if verbose:
            print(f"  {name:20s} max |error| {err:.2e}  {'ok' if good else 'FAILED'}")
    return ok, errors


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser():
    from ._bench import DEFAULT_THREADS
    p = argparse.ArgumentParser(
        prog="python -m fastnorm", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--info", action="store_true", help="print build information only")
    p.add_argument("--check", action="store_true",
                   help="build information and the self-check, no benchmark")
    p.add_argument("--quick", action="store_true",
                   help="a subset of the cases with fewer rounds (under a minute)")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (no table; progress on stderr)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also save a bar chart of time / roof per case (needs matplotlib)")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, metavar="N",
                   help=f"threads for fastnorm, the roof and the peers (default "
                        f"{DEFAULT_THREADS})")
    p.add_argument("--case", metavar="TEXT",
                   help="only the cases whose id or label contains TEXT")
    return p


def _load():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _header_lines(info, threads, quick, versions, impls, load):
    peers = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "none"
    missing = [k for k, v in versions.items() if not v]
    lines = [
        f"benchmark: float32, {threads} thread(s), kernel variant {info['kernel_variant']}, "
        f"{'quick subset' if quick else 'all cases'}; medians of interleaved rounds",
        f"versions: fastnorm {info['version']}, {peers}"
        + (f" (not installed: {', '.join(missing)})" if missing else ""),
        "in-place = fastnorm(x, out=x), alloc = fastnorm(x), roof = one x = a*x + b pass "
        "over the same bytes,",
        "GB/s = 2 * tensor bytes / in-place time, /roof = in-place / roof time, "
        "x numpy, x torch, x ORT = peer / in-place time",
        "others = CPUs used by other processes meanwhile (times: medians over rounds; ratios: "
        "medians of the per-round ratios)",
    ]
    if load is not None:
        lines.append(f"load average (1 min) before the run: {load:.2f} on {os.cpu_count()} "
                     "CPUs" + ("  (other work is running: expect noisy figures)"
                               if load > 0.5 else ""))
    return lines


def _finite(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def main(argv=None):
    args = _parser().parse_args(argv)
    info = fn.build_info()
    out = sys.stdout
    log = sys.stderr if args.json else sys.stdout

    if args.plot and not (args.info or args.check):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib, which is not installed: "
                  "pip install matplotlib (or pip install 'fastnorm-kernels[plot]')",
                  file=sys.stderr)
            return 2

    if not args.json:
        print("fastnorm build:")
        for key, value in info.items():
            print(f"  {key:22s} {value}")
        if args.info:
            return 0
        print("self-check against float64 NumPy:")
        ok, check_errors = self_check(verbose=True)
    else:
        if args.info:
            json.dump({"build_info": info}, out, indent=2, default=str)
            out.write("\n")
            return 0
        ok, check_errors = self_check(verbose=False)
        if not ok:
            print("self-check FAILED: " + ", ".join(
                f"{k} {v:.2e}" for k, v in check_errors.items() if not v < 1e-9),
                file=sys.stderr)
    if args.check or not ok:
        if args.json:
            json.dump({"build_info": info, "self_check": {"ok": ok, "max_abs_error":
                       check_errors}, "ok": ok, "cases": []}, out, indent=2, default=str)
            out.write("\n")
        return 0 if ok else 1

    from . import _bench as B
    cases = B.select_cases(args.quick, args.case)
    if not cases:
        print(f"no case matches {args.case!r}; ids: "
              + ", ".join(c.id for c in B.CASES), file=sys.stderr)
        return 2
    impls = B.available_implementations()
    versions = B.versions()
    load = _load()
    start = time.perf_counter()

    if args.json:
        def report(res):
            print(f"  {res.case.label} {res.case.shape_str}: {res.seconds:.1f} s"
                  + ("" if res.ok else "  fastnorm WRONG"), file=log, flush=True)
        print(f"benchmark: {len(cases)} cases, {args.threads} thread(s)", file=log, flush=True)
    else:
        print()
        for line in _header_lines(info, args.threads, args.quick, versions, impls, load):
            print(line)
        print()
        print(B.table_header(impls), flush=True)

        def report(res):
            print(B.table_row(res, impls), flush=True)

    results = B.run(cases, threads=args.threads, quick=args.quick, callback=report)
    elapsed = time.perf_counter() - start
    bench_ok = all(r.ok for r in results)

    if args.json:
        doc = {
            "build_info": info,
            "self_check": {"ok": ok, "max_abs_error": check_errors},
            "threads": args.threads, "dtype": "float32", "quick": args.quick,
            "versions": versions, "implementations": impls, "seconds": elapsed,
            "load_average_before": load, "cpu_count": os.cpu_count(),
            "ok": ok and bench_ok,
            "cases": [r.to_dict() for r in results],
        }

        def clean(o):        # JSON has no inf/nan
            if isinstance(o, dict):
                return {k: clean(v) for k, v in o.items()}
            if isinstance(o, (list, tuple)):
                return [clean(v) for v in o]
            if isinstance(o, float):
                return _finite(o)
            return o
        json.dump(clean(doc), out, indent=2, default=str)
        out.write("\n")
    else:
        notes = B.table_notes(results)
        if notes:
            print()
            for line in notes:
                print(line)
        print(f"\n{len(results)} case{'s' if len(results) != 1 else ''} in {elapsed:.0f} s")
        if not bench_ok:
            print("FAILED: fastnorm's result differs from NumPy's in: " + ", ".join(
                f"{r.case.label} {r.case.shape_str}" for r in results if not r.ok))

    if args.plot:
        try:
            B.plot(results, args.plot, args.threads)
            print(f"plot saved to {args.plot}", file=log)
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0 if (ok and bench_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
