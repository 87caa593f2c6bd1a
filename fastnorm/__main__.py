"""python -m fastnorm: build information, a self-check against NumPy, and the benchmark table.
`python -m fastnorm stats PATH...` computes per-channel statistics of a dataset (needs dask;
`python -m fastnorm stats --help`).

Each benchmark case times fastnorm in place (out=x) and allocating (out=None), plain float32
NumPy, the roof (one in-place pass x = a*x + b over the same bytes with the same threads) and,
when installed, PyTorch and ONNX Runtime, all in one process with rounds interleaved; the
figures are medians. The peers run last (phase 2), after every case's fastnorm, NumPy and roof
rounds (phase 1), so that their spinning threads cannot slow those. A second table times
normalize_image on decoded images against NumPy, the roof and, when installed, OpenCV,
albumentations and PyTorch tensor ops (fastnorm._bench.images). Exits non-zero if the
self-check or a benchmark's correctness check fails.
"""
import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

import numpy as np
from numpy.typing import NDArray

import fastnorm as fn
from fastnorm import _reference as ref

if TYPE_CHECKING:
    from ._bench.results import CaseResult


def self_check(verbose: bool = True) -> tuple[bool, dict[str, float]]:
    """Each op and moments against the float64 formulas of fastnorm._reference on small random
    data. Returns (ok, {name: max |error|})."""
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(4, 6, 5, 7))
    images = rng.integers(0, 256, size=(3, 9, 11, 3), dtype=np.uint8)
    checks: dict[str, NDArray[np.float64]] = {
        "moments": fn.moments(x, axis=(0, 2, 3))[1] - ref.ref_moments(x, axis=(0, 2, 3))[1],
        "batch_norm": fn.batch_norm(x, training=True) - ref.ref_batch_norm(x, training=True)[0],
        "instance_norm": fn.instance_norm(x) - ref.ref_instance_norm(x)[0],
        "group_norm": fn.group_norm(x, 3) - ref.ref_group_norm(x, 3)[0],
        "layer_norm": fn.layer_norm(x, (5, 7)) - ref.ref_layer_norm(x, (5, 7))[0],
        "rms_norm": fn.rms_norm(x, 7, eps=1e-5) - ref.ref_rms_norm(x, 7, eps=1e-5),
        "channel_layer_norm": (fn.channel_layer_norm(x, eps=1e-5)
                               - ref.ref_channel_layer_norm(x, eps=1e-5)),
        "moments uint8": (fn.moments(images, axis=(0, 1, 2))[1]
                          - ref.ref_moments(images, axis=(0, 1, 2))[1]),
        "normalize_image": (fn.normalize_image(images, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25),
                                               dtype=np.float64)
                            - ref.ref_normalize_image(images, (0.4, 0.5, 0.6),
                                                      (0.2, 0.3, 0.25))),
    }
    ok = True
    errors: dict[str, float] = {}
    for name, diff in checks.items():
        err = float(np.max(np.abs(diff)))
        good = err < 1e-9
        ok &= good
        errors[name] = err
        if verbose:
            print(f"  {name:20s} max |error| {err:.2e}  {'ok' if good else 'FAILED'}")
    return ok, errors


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
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


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _progress(log: TextIO) -> "Callable[[int, CaseResult], None]":
    """A run() progress callback: a line per phase, then one per case, to `log`."""
    current: int | None = None
    since = time.perf_counter()

    def progress(phase: int, res: "CaseResult") -> None:
        nonlocal current, since
        if phase != current:
            current = phase
            print(f"phase {phase}: " + ("fastnorm, numpy and the roof (no peer has run yet)"
                                        if phase == 1 else "the peers, beside fastnorm in place"),
                  file=log, flush=True)
        now = time.perf_counter()
        print(f"  {res.case.label} {res.case.shape_str}: {now - since:.1f} s"
              + ("" if res.ok else "  fastnorm WRONG"), file=log, flush=True)
        since = now
    return progress


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["stats"]:        # python -m fastnorm stats PATH... (dataset statistics)
        from ._dataset_stats import main as stats_main
        return stats_main(argv[1:])
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

    from . import _bench as B
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
            B.write_json({"build_info": info}, out)
            return 0
        ok, check_errors = self_check(verbose=False)
        if not ok:
            print("self-check FAILED: " + ", ".join(
                f"{k} {v:.2e}" for k, v in check_errors.items() if not v < 1e-9),
                file=sys.stderr)
    self_check_doc = {"ok": ok, "max_abs_error": check_errors}
    if args.check or not ok:
        if args.json:
            B.write_json({"build_info": info, "self_check": self_check_doc, "ok": ok,
                          "cases": []}, out)
        return 0 if ok else 1

    from ._bench import images as BI
    cases = B.select_cases(args.quick, args.case)
    image_cases = BI.select_image_cases(args.quick, args.case)
    if not cases and not image_cases:
        print(f"no case matches {args.case!r}; ids: "
              + ", ".join(c.id for c in B.CASES + BI.IMAGE_CASES), file=sys.stderr)
        return 2
    impls = B.available_implementations()
    versions = B.versions()
    machine = B.machine_info()
    load = _load()
    start = time.perf_counter()

    if args.json:
        print(f"benchmark: {len(cases) + len(image_cases)} cases, {args.threads} thread(s)",
              file=log, flush=True)
    else:
        print()
        for line in B.header_lines(info, machine, args.threads, args.quick, versions, load):
            print(line)
        print()
    results = B.run(cases, threads=args.threads, quick=args.quick,
                    progress=_progress(log)) if cases else []
    image_results = BI.run_images(image_cases, threads=args.threads, quick=args.quick,
                                  progress=_progress(log)) if image_cases else []
    elapsed = time.perf_counter() - start
    bench_ok = all(r.ok for r in results + image_results)

    if args.json:
        B.write_json({
            "build_info": info, "self_check": self_check_doc, "machine": machine,
            "threads": args.threads, "dtype": "float32", "quick": args.quick,
            "versions": versions, "implementations": impls, "seconds": elapsed,
            "load_average_before": load, "cpu_count": os.cpu_count(),
            "ok": ok and bench_ok, "cases": [r.to_dict() for r in results],
            "image_cases": [BI.image_result_dict(r) for r in image_results],
        }, out)
    else:
        if results:
            print()
            print(B.table_header(impls))
            for res in results:
                print(B.table_row(res, impls))
            notes = B.table_notes(results)
            if notes:
                print()
                for line in notes:
                    print(line)
        if image_results:
            lines, notes = BI.image_table(image_results)
            print()
            print(BI.image_header())
            print()
            for line in lines:
                print(line)
            if notes:
                print()
                for line in notes:
                    print(line)
        n = len(results) + len(image_results)
        print(f"\n{n} case{'s' if n != 1 else ''} in {elapsed:.0f} s")
        if not bench_ok:
            print("FAILED: fastnorm's result differs from the reference in: " + ", ".join(
                f"{r.case.label} {r.case.shape_str}" for r in results + image_results
                if not r.ok))

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
