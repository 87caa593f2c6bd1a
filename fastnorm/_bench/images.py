"""Image benchmark cases: normalize_image against the tools its users come from.

Each case is a preprocessing step of an inference pipeline on decoded images (HWC, uint8 or
uint16) producing the model's input. Implementations (runner builders `image_runner` in
runners/fastnorm.py, numpy.py, opencv.py, albumentations.py, torch.py):

  fastnorm        normalize_image into a preallocated output (out=)
  fastnorm_alloc  normalize_image allocating its output
  numpy           float32 NumPy: astype, scale, subtract, divide, transpose to NCHW
  roof            one contiguous pass y = x * a + b over the same bytes (1 byte read and 4
                  written per value for uint8), same threads (uint8 cases only)
  opencv          cv2.dnn.blobFromImage(s)WithParams (per-channel scalefactor and mean),
                  cv2.setNumThreads(threads)
  albumentations  A.Normalize per image, np.stack, transpose to NCHW (its own HWC output
                  for NHWC cases)
  torch           tensor ops as torchvision's ToImage + ToDtype + Normalize run them:
                  permute + contiguous, to(float32), div, sub, div; set_num_threads

Every runner is checked against the float64 formulas of fastnorm._reference before it is
timed. The run has the two phases of the normalization benchmark (phases.py): fastnorm,
NumPy and the roof of every case before any peer has been imported, then the peers, each
round beside fastnorm (the "x peer" ratios are per-round ratios of that phase). A peer that
is not installed, or cannot run a case (OpenCV has no per-image statistics mode), is
skipped with a note.
"""
import importlib
import importlib.util
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from .. import _reference as ref
from .cases import DEFAULT_THREADS, Shaped
from .results import CaseResult
from .runners import Runner
from .phases import _checked_runners, _time_phase
from .timing import FULL, QUICK, Settings

# the modes and layouts of normalize_image
ImageMode = Literal["standard", "image", "image_per_channel", "min_max",
                    "min_max_per_channel"]
ImageLayout = Literal["NCHW", "NHWC"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_IMPLEMENTATIONS = ("fastnorm", "fastnorm_alloc", "numpy", "roof", "opencv",
                         "albumentations", "torch")
IMAGE_PEERS = {"opencv": "cv2", "albumentations": "albumentations", "torch": "torch"}
_RUNNER_MODULES = {"fastnorm": "fastnorm", "fastnorm_alloc": "fastnorm", "numpy": "numpy",
                   "roof": "fastnorm", "opencv": "opencv",
                   "albumentations": "albumentations", "torch": "torch"}
_BUILDERS = {"fastnorm": "image_runner", "fastnorm_alloc": "image_runner_alloc",
             "numpy": "image_runner", "roof": "image_roof", "opencv": "image_runner",
             "albumentations": "image_runner", "torch": "image_runner"}


@dataclass(frozen=True)
class ImageCase(Shaped):
    id: str
    label: str
    shape: tuple[int, ...]  # (N, H, W, C) batch or (H, W, C) single image
    dtype: str = "uint8"
    mode: ImageMode = "standard"
    layout: ImageLayout = "NCHW"
    quick: bool = False

    @property
    def single(self) -> bool:
        return len(self.shape) == 3

    def traffic(self) -> int:
        """Bytes read and written by one pass: the images in, float32 out."""
        return self.size * (np.dtype(self.dtype).itemsize + 4)

    def nbytes(self) -> float:          # CaseResult's gbps: 2 * nbytes / time = traffic / time
        return self.traffic() / 2


IMAGE_CASES = [
    ImageCase("img_batch32", "batch uint8 -> NCHW", (32, 224, 224, 3), quick=True),
    ImageCase("img_frame1080p", "frame uint8 -> NCHW", (1080, 1920, 3)),
    ImageCase("img_u16_batch8", "batch uint16 -> NCHW", (8, 512, 512, 3), "uint16"),
    ImageCase("img_per_channel32", "image_per_channel -> NHWC", (32, 224, 224, 3),
              mode="image_per_channel", layout="NHWC"),
]


def select_image_cases(quick: bool = False, pattern: str | None = None) -> list[ImageCase]:
    cases = [c for c in IMAGE_CASES if c.quick or not quick]
    if pattern:
        cases = [c for c in cases if pattern in c.id or pattern in c.label]
    return cases


class ImageSetup:
    """Data of one case (the same seed, the same images) and its float64 reference."""

    def __init__(self, case: ImageCase, threads: int = DEFAULT_THREADS, seed: int = 0) -> None:
        self.case = case
        self.threads = int(threads)
        rng = np.random.default_rng(seed)
        hi = np.iinfo(case.dtype).max
        self.images: NDArray[Any] = rng.integers(0, hi, size=case.shape, dtype=case.dtype,
                                                 endpoint=True)
        self.max_value = float(hi)
        self.mean: tuple[float, ...] = IMAGENET_MEAN
        self.std: tuple[float, ...] = IMAGENET_STD
        self._reference: NDArray[np.float64] | None = None

    @property
    def standard(self) -> bool:
        return self.case.mode == "standard"

    def out_shape(self) -> tuple[int, ...]:
        c = self.case.shape[-1]
        spatial = self.case.shape[-3:-1]
        lead = self.case.shape[:-3]
        return lead + ((c,) + spatial if self.case.layout == "NCHW" else spatial + (c,))

    def reference(self) -> NDArray[np.float64]:
        if self._reference is None:
            if self.standard:
                self._reference = ref.ref_normalize_image(self.images, self.mean, self.std,
                                                          layout=self.case.layout)
            else:
                self._reference = ref.ref_normalize_image(self.images, mode=self.case.mode,
                                                          layout=self.case.layout)
        return self._reference

    def runner(self, impl: str) -> Runner:
        module = importlib.import_module(f"{__package__}.runners.{_RUNNER_MODULES[impl]}")
        builder: Callable[[ImageSetup], Runner] = getattr(module, _BUILDERS[impl])
        return builder(self)

    def check(self, impl: str, runner: Runner) -> tuple[float, float]:
        """max |error| of one call against its expectation, and the tolerance."""
        with runner.entered():
            got = np.asarray(runner.output(runner.call()))
        if impl == "roof":
            want = self.images.reshape(-1).astype(np.float64) / self.max_value
        else:
            want = self.reference()
        if got.shape != want.shape:
            raise AssertionError(f"{impl}: shape {got.shape}, expected {want.shape}")
        return float(np.max(np.abs(got - want))), 1e-4 * max(1.0, float(np.max(np.abs(want))))


def image_missing(impl: str) -> list[str]:
    module = IMAGE_PEERS.get(impl)
    if module is None:
        return []
    try:
        return [] if importlib.util.find_spec(module) is not None else [module]
    except (ImportError, ValueError):
        return [module]


PHASE_1 = ("fastnorm", "fastnorm_alloc", "numpy", "roof")


def run_images(cases: Sequence[ImageCase] | None = None, threads: int = DEFAULT_THREADS,
               quick: bool = False, settings: Settings | None = None,
               progress: Callable[[int, CaseResult], object] | None = None,
               implementations: Collection[str] = IMAGE_IMPLEMENTATIONS) -> list[CaseResult]:
    """Both phases over `cases`; returns a CaseResult per case."""
    cases = select_image_cases(quick) if cases is None else cases
    settings = settings or (QUICK if quick else FULL)
    results: list[CaseResult] = []
    done: list[ImageCase] = []     # the case of each of `results`
    for case in cases:
        t0 = time.perf_counter()
        res = CaseResult(case)
        impls = [i for i in PHASE_1 if i in implementations]
        runners = _checked_runners(ImageSetup(case, threads), impls, res, image_missing)
        _time_phase(res, runners, settings, len(runners) / len(IMAGE_IMPLEMENTATIONS))
        res.seconds += time.perf_counter() - t0
        results.append(res)
        done.append(case)
        if progress:
            progress(1, res)
    for case, res in zip(done, results):
        t0 = time.perf_counter()
        setup = ImageSetup(case, threads)
        peers = [i for i in IMAGE_PEERS if i in implementations]
        runners = _checked_runners(setup, peers, res, image_missing)
        if runners and "fastnorm" in res.phases[0].samples:
            runners = {"fastnorm": setup.runner("fastnorm"), **runners}
            _time_phase(res, runners, settings, len(runners) / len(IMAGE_IMPLEMENTATIONS))
        res.seconds += time.perf_counter() - t0
        if progress:
            progress(2, res)
    return results


def best_peer(res: CaseResult) -> tuple[str | None, float | None]:
    """(peer, its time / fastnorm's) of the fastest peer that ran, or (None, None)."""
    all_ratios = {p: res.ratio(p, "fastnorm") for p in IMAGE_PEERS}
    ratios = {p: r for p, r in all_ratios.items() if r}
    if not ratios:
        return None, None
    p = min(ratios, key=ratios.__getitem__)
    return p, ratios[p]


def _case(res: CaseResult) -> ImageCase:
    """The case of a result of run_images."""
    return cast(ImageCase, res.case)


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def image_table(results: Iterable[CaseResult]) -> tuple[list[str], list[str]]:
    """The lines of the image table (header, rule, rows, notes)."""
    from .report import fmt_time
    short = {"opencv": "OpenCV", "albumentations": "albument.", "torch": "torch"}
    cols: list[tuple[str, int, Callable[[CaseResult], object]]] = [
            ("case", 26, lambda r: r.case.label), ("shape", 14, lambda r: r.case.shape_str),
            ("MB", 6, lambda r: f"{_case(r).traffic() / 1e6:.1f}"),
            ("out=", 9, lambda r: fmt_time(r.times.get("fastnorm"))),
            ("alloc", 9, lambda r: fmt_time(r.times.get("fastnorm_alloc"))),
            ("GB/s", 6, lambda r: _fmt(r.gbps, ".1f")),
            ("roof", 9, lambda r: fmt_time(r.times.get("roof"))),
            ("/roof", 6, lambda r: _fmt(r.ratio("fastnorm", "roof"), ".2f",
                                        "*" if r.noisy else "")),
            ("numpy", 9, lambda r: fmt_time(r.times.get("numpy"))),
            ("x numpy", 8, lambda r: _fmt(r.ratio("numpy", "fastnorm"), ".1f", "x"))]

    def peer_time(p: str) -> Callable[[CaseResult], str]:
        return lambda r: fmt_time(r.times.get(p))

    def peer_ratio(p: str) -> Callable[[CaseResult], str]:
        return lambda r: _fmt(r.ratio(p, "fastnorm"), ".1f", "x")
    for p in IMAGE_PEERS:
        cols.append((short[p], 9, peer_time(p)))
        cols.append((f"x {short[p][:6]}", 8, peer_ratio(p)))
    cols.append(("x best", 7, lambda r: _fmt(best_peer(r)[1], ".1f", "x")))
    cols.append(("others", 6, lambda r: _fmt(r.others, ".2f")))
    head = "  ".join(t.ljust(w) if i < 2 else t.rjust(w) for i, (t, w, _) in enumerate(cols))
    lines = [head, "-" * len(head)]
    for r in results:
        cells = []
        for i, (_, w, get) in enumerate(cols):
            s = "FAILED" if (i == 3 and not r.ok) else str(get(r))
            cells.append(s.ljust(w) if i < 2 else s.rjust(w))
        lines.append("  ".join(cells))
    notes = []
    for r in results:
        for impl, why in r.wrong.items():
            notes.append(f"{r.case.label} {r.case.shape_str}: {impl} WRONG, not timed ({why})")
        for impl, why in r.unavailable.items():
            notes.append(f"{r.case.label} {r.case.shape_str}: {impl} skipped ({why})")
    seen: set[tuple[str, str]] = set()
    for r in results:
        for impl, note in r.notes.items():
            if note and (impl, note) not in seen:
                seen.add((impl, note))
                notes.append(f"{impl} runs {note}")
    return lines, notes


def image_versions() -> dict[str, str | None]:
    """Each image peer's version (None: not installed), found without importing it."""
    from .machine import _version
    return {impl: (_version(module) if not image_missing(impl) else None)
            for impl, module in IMAGE_PEERS.items()}


def image_header() -> str:
    v = image_versions()
    peers = ", ".join(f"{k} {x}" for k, x in v.items() if x) or "none"
    missing = [k for k, x in v.items() if not x]
    return (f"image peers: {peers}" + (f" (not installed: {', '.join(missing)})"
                                       if missing else "") + "\n" +
            "images: out= = normalize_image(images, mean, std, out=buf), alloc = without out, "
            "MB = bytes read + written (float32 out), GB/s = MB / out= time, roof = one "
            "contiguous y = x * a + b pass over those bytes, x peer = peer / out= time "
            "(per-round ratios beside the peer), x best = the fastest peer's")


def image_result_dict(res: CaseResult) -> dict[str, Any]:
    """The JSON record of one image case."""
    c = _case(res)
    peer, x_best = best_peer(res)
    return {
        "id": c.id, "label": c.label, "shape": list(c.shape), "dtype": c.dtype,
        "mode": c.mode, "layout": c.layout, "bytes_moved": c.traffic(),
        "times_s": res.times, "samples_s": res.samples, "max_abs_error": dict(res.errors),
        "unavailable": dict(res.unavailable), "wrong": dict(res.wrong),
        "notes": {k: v for k, v in res.notes.items() if v}, "rounds": res.rounds,
        "noisy": res.noisy, "other_processes_cpus": res.others, "gb_per_s": res.gbps,
        "time_per_roof": res.ratio("fastnorm", "roof"),
        "speedup": {impl: res.ratio(impl, "fastnorm") for impl in IMAGE_IMPLEMENTATIONS
                    if impl != "fastnorm"},
        "best_peer": peer, "speedup_best_peer": x_best,
        "phases": [p.to_dict() for p in res.phases],
    }
