"""Presentation of a run: the header lines, the table and its notes, the JSON document and
the plot."""
import json
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import IO, Any, cast

from .cases import DEFAULT_THREADS, Case
from .machine import describe_caches
from .results import BUSY, NOISY, CaseResult
from .runners import IMPLEMENTATIONS, PEERS

# (title, width, the cell of a result) of a table column
Column = tuple[str, int, Callable[[CaseResult], object]]


def fmt_time(t: float | None) -> str:
    """Seconds as a fixed-width (8) string with a unit."""
    if t is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            break
    else:
        unit, scale = "ns", 1e-9
    v = t / scale
    digits = 0 if v >= 100 else 1 if v >= 10 else 2
    return f"{v:.{digits}f} {unit}"


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def table_columns(impls: Collection[str]) -> list[Column]:
    """(title, width, getter) of the table's columns; peers only when available."""
    cols: list[Column] = [
        ("case", 22, lambda r: r.case.label),
        ("shape", 15, lambda r: r.case.shape_str),
        ("MB", 6, lambda r: f"{r.case.nbytes() / 1e6:.1f}" if r.case.nbytes() >= 1e5
         else f"{r.case.nbytes() / 1e6:.3f}"),
        ("in-place", 9, lambda r: fmt_time(r.times.get("fastnorm"))),
        ("alloc", 9, lambda r: fmt_time(r.times.get("fastnorm_alloc"))),
        ("numpy", 9, lambda r: fmt_time(r.times.get("numpy"))),
        ("x numpy", 8, lambda r: _fmt(r.ratio("numpy", "fastnorm"), ".1f", "x")),
        ("GB/s", 6, lambda r: _fmt(r.gbps, ".1f")),
        ("roof", 9, lambda r: fmt_time(r.times.get("roof"))),
        ("/roof", 6, lambda r: _fmt(r.ratio("fastnorm", "roof"), ".2f",
                                    "*" if r.noisy else "")),
        ("/NCHW", 6, lambda r: _fmt(r.ratio("fastnorm", "fastnorm_nchw"), ".2f")),
    ]
    if "torch" in impls:
        cols += [("torch", 9, lambda r: fmt_time(r.times.get("torch"))),
                 ("x torch", 8, lambda r: _fmt(r.ratio("torch", "fastnorm"), ".1f", "x"))]
    if "onnxruntime" in impls:
        cols += [("ORT", 9, lambda r: fmt_time(r.times.get("onnxruntime"))
                  if "onnxruntime" not in r.unavailable else "n/a"),
                 ("x ORT", 7, lambda r: _fmt(r.ratio("onnxruntime", "fastnorm"), ".1f", "x"))]
    cols.append(("others", 6, lambda r: _fmt(r.others, ".2f")))
    return cols


def table_header(impls: Collection[str]) -> str:
    cols = table_columns(impls)
    head = "  ".join(t.ljust(w) if i < 2 else t.rjust(w) for i, (t, w, _) in enumerate(cols))
    return head + "\n" + "-" * len(head)


def table_row(result: CaseResult, impls: Collection[str]) -> str:
    cells: list[str] = []
    for i, (_, w, get) in enumerate(table_columns(impls)):
        s = "FAILED" if (not result.ok and i == 3) else str(get(result))
        cells.append(s.ljust(w) if i < 2 else s.rjust(w))
    return "  ".join(cells)


def table_notes(results: Sequence[CaseResult]) -> list[str]:
    """Lines under the table: unavailable or wrong peers, how composite peers run."""
    lines: list[str] = []
    if any(r.noisy for r in results):
        lines.append(f"* noisy: in-place or roof times varied by more than {NOISY:.0%} "
                     f"(IQR / median) between rounds, or other processes used more than "
                     f"{BUSY} CPUs meanwhile; rerun on a quieter machine")
    for r in results:
        for impl, why in r.wrong.items():
            lines.append(f"{r.case.label} {r.case.shape_str}: {impl} WRONG, not timed ({why})")
        for impl, why in r.unavailable.items():
            if impl in PEERS and "not installed" in why:
                continue
            lines.append(f"{r.case.label} {r.case.shape_str}: {impl} unavailable ({why})")
    seen: set[tuple[str, str]] = set()
    for r in results:
        op = cast(Case, r.case).op        # a result of the normalization table
        for impl, note in r.notes.items():
            if note and (op, impl) not in seen:
                seen.add((op, impl))
                lines.append(f"{r.case.label}: {impl} runs {note}")
    return lines


def plot(results: Sequence[CaseResult], path: "str | os.PathLike[str]",
         threads: int = DEFAULT_THREADS) -> None:
    """Bar chart (log scale) of each implementation's time / roof per case. Needs matplotlib;
    raises ImportError with a hint if it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install matplotlib "
                          "(or pip install 'fastnorm-kernels[plot]')") from exc
    impls = [i for i in IMPLEMENTATIONS if i not in ("roof", "fastnorm_nchw")
             and any(i in r.times for r in results)]
    labels = {"fastnorm": "fastnorm in place", "fastnorm_alloc": "fastnorm allocating",
              "numpy": "NumPy", "torch": "PyTorch", "onnxruntime": "ONNX Runtime"}
    colors = {"fastnorm": "#1f77b4", "fastnorm_alloc": "#aec7e8", "numpy": "#7f7f7f",
              "torch": "#ff7f0e", "onnxruntime": "#2ca02c"}
    n = len(results)
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * n + 2), 5.5))
    for k, impl in enumerate(impls):
        xs: list[float] = []
        ys: list[float] = []
        for i, r in enumerate(results):
            v = r.ratio(impl, "roof")
            if v:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(v)
        ax.bar(xs, ys, width, label=labels.get(impl, impl), color=colors.get(impl))
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    # peers: their ratio to fastnorm in place (phase 2) times fastnorm's to the roof (phase 1)
    ax.set_ylabel("time / roof (lower is better; roof = one x = a*x + b pass)")
    ax.set_xticks(range(n))
    ax.set_xticklabels([f"{r.case.label}\n{r.case.shape_str}" for r in results],
                       rotation=45, ha="right", fontsize=8)
    ax.set_title(f"fastnorm benchmark: float32, {threads} threads, medians")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# the header and the JSON document of `python -m fastnorm`

def header_lines(info: Mapping[str, Any], machine: Mapping[str, Any], threads: int, quick: bool,
                 versions: Mapping[str, str | None], load: float | None) -> list[str]:
    peers = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "none"
    missing = [k for k, v in versions.items() if not v]
    cache = describe_caches(machine["caches"])
    lines = [
        f"benchmark: float32, {threads} thread(s), kernel variant {machine['kernel_variant']}, "
        f"{'quick subset' if quick else 'all cases'}; medians of interleaved rounds",
        f"cpu: {machine['cpu_model']} ({machine['machine']}, {machine['cpu_count']} CPUs"
        + (f"; {cache})" if cache else ")"),
        f"versions: fastnorm {info['version']}, {peers}"
        + (f" (not installed: {', '.join(missing)})" if missing else ""),
        "in-place = fastnorm(x, out=x), alloc = fastnorm(x), roof = one x = a*x + b pass "
        "over the same bytes,",
        "GB/s = 2 * tensor bytes / in-place time, /roof = in-place / roof time, "
        "x numpy, x torch, x ORT = peer / in-place time,",
        "/NCHW (NHWC rows) = in-place / the same op in place on NCHW memory of the same "
        "values, timed beside it",
        "others = CPUs used by other processes meanwhile (times: medians over rounds; ratios: "
        "medians of the per-round ratios)",
    ]
    if any(versions.get(impl) for impl in PEERS):
        lines.insert(-1, "phase 1 (in-place, alloc, numpy, roof) ran before any peer in this "
                         "process; x torch and x ORT are ratios to in-place timed again beside "
                         "the peer (phase 2)")
    if load is not None:
        lines.append(f"load average (1 min) before the run: {load:.2f} on {os.cpu_count()} "
                     "CPUs" + ("  (other work is running: expect noisy figures)"
                               if load > 0.5 else ""))
    return lines


def _finite(o: object) -> object:
    """`o` with inf/nan (which JSON lacks) replaced by None, through dicts and lists."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    return o


def write_json(doc: object, out: IO[str]) -> None:
    json.dump(_finite(doc), out, indent=2, default=str)
    out.write("\n")
