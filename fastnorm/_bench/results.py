"""`CaseResult`: what the two phases of a run measured for one case, and the figures derived
from it (medians, per-round ratios, noise flags, the JSON record)."""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .cases import DTYPE, Case

if TYPE_CHECKING:
    from .images import ImageCase

BUSY = 0.25         # a case is flagged noisy when other processes used more CPUs than this
NOISY = 0.2         # ... or when IQR/median of its in-place or roof times exceeds this


@dataclass
class PhaseTimes:
    """One phase's interleaved rounds of one case."""
    samples: dict[str, list[float]]   # impl -> seconds per call, each round
    reps: dict[str, int]              # impl -> calls per sample
    others: float | None = None       # CPUs used by other processes meanwhile
    seconds: float = 0.0          # wall time of the rounds

    @property
    def rounds(self) -> int:
        return len(next(iter(self.samples.values()), ()))

    def to_dict(self) -> dict[str, Any]:
        return {"implementations": list(self.samples), "rounds": self.rounds,
                "reps": dict(self.reps), "samples_s": dict(self.samples),
                "other_processes_cpus": self.others, "seconds": self.seconds}


@dataclass
class CaseResult:
    case: "Case | ImageCase"
    phases: list[PhaseTimes] = field(default_factory=list)   # 1 (no peer), 2 (peers)
    errors: dict[str, float] = field(default_factory=dict)   # impl -> max |error| vs ref.
    unavailable: dict[str, str] = field(default_factory=dict)  # impl -> reason
    wrong: dict[str, str] = field(default_factory=dict)      # impl -> message (failed)
    notes: dict[str, str] = field(default_factory=dict)      # impl -> how it is computed
    seconds: float = 0.0                             # wall time spent on the case

    def _first_phase(self, impl: str) -> PhaseTimes:
        return next(p for p in self.phases if impl in p.samples)

    @property
    def samples(self) -> dict[str, list[float]]:
        """impl -> per-round seconds of the first phase that timed it (fastnorm: phase 1)."""
        out: dict[str, list[float]] = {}
        for p in self.phases:
            for impl, s in p.samples.items():
                out.setdefault(impl, s)
        return out

    @property
    def times(self) -> dict[str, float]:
        """impl -> median seconds per call, from the first phase that timed it."""
        return {impl: float(np.median(s)) for impl, s in self.samples.items()}

    @property
    def reps(self) -> dict[str, int]:
        return {impl: self._first_phase(impl).reps[impl] for impl in self.samples}

    @property
    def rounds(self) -> int:
        return self.phases[0].rounds if self.phases else 0

    @property
    def others(self) -> float | None:
        """CPUs used by other processes while the case was timed (the busier phase)."""
        known = [p.others for p in self.phases if p.others is not None]
        return max(known) if known else None

    @property
    def ok(self) -> bool:
        """fastnorm's result matched the reference (both runners)."""
        return not any(impl in self.wrong for impl in ("fastnorm", "fastnorm_alloc"))

    def ratio(self, num: str, den: str) -> float | None:
        """Time of `num` / time of `den`: the median over rounds of the ratio within a round
        (robust to drifting load on a shared machine), from the phase that timed both; for a
        peer against the roof, the product of the ratios to fastnorm in place of the two
        phases. None if either did not run."""
        for p in self.phases:
            a, b = p.samples.get(num), p.samples.get(den)
            if a and b and len(a) == len(b):
                return float(np.median([x / y for x, y in zip(a, b)]))
        if "fastnorm" not in (num, den):
            to, fro = self.ratio(num, "fastnorm"), self.ratio("fastnorm", den)
            if to and fro:
                return to * fro
        return None

    def spread(self, impl: str) -> float | None:
        """Interquartile range / median of `impl`'s per-round times (None if not timed)."""
        a = self.samples.get(impl)
        if not a:
            return None
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        return float((q3 - q1) / med) if med > 0 else None

    @property
    def noisy(self) -> bool:
        """In phase 1, the in-place or roof times varied by more than NOISY between rounds, or
        other processes used more than BUSY CPUs: the /roof figure is not to be trusted."""
        if not self.phases:
            return False
        return ((self.phases[0].others or 0) > BUSY
                or any((self.spread(i) or 0) > NOISY for i in ("fastnorm", "roof")))

    @property
    def gbps(self) -> float | None:
        t = self.times.get("fastnorm")
        return 2 * self.case.nbytes() / t / 1e9 if t else None

    def summary(self) -> dict[str, float | None]:
        """The derived figures the table and the JSON report."""
        return {
            "gb_per_s": self.gbps,                                  # 2 * nbytes / in-place
            "time_per_roof": self.ratio("fastnorm", "roof"),
            "time_per_nchw": self.ratio("fastnorm", "fastnorm_nchw"),   # channels-last cases
            "alloc_per_roof": self.ratio("fastnorm_alloc", "roof"),
            "speedup_numpy": self.ratio("numpy", "fastnorm"),
            "speedup_torch": self.ratio("torch", "fastnorm"),
            "speedup_onnxruntime": self.ratio("onnxruntime", "fastnorm"),
        }

    def to_dict(self) -> dict[str, Any]:
        c = self.case
        assert isinstance(c, Case)               # (the image table: images.image_result_dict)
        return {
            "id": c.id, "label": c.label, "op": c.op, "shape": list(c.shape),
            "dtype": np.dtype(DTYPE).name, "nbytes": c.nbytes(), "tiny": c.tiny,
            "times_s": self.times, "samples_s": self.samples,
            "max_abs_error": dict(self.errors),
            "unavailable": dict(self.unavailable), "wrong": dict(self.wrong),
            "notes": {k: v for k, v in self.notes.items() if v},
            "rounds": self.rounds, "reps": self.reps, "seconds": self.seconds,
            "spread_iqr_over_median": {k: self.spread(k) for k in self.samples},
            "noisy": self.noisy, "other_processes_cpus": self.others,
            "phases": [p.to_dict() for p in self.phases],
            **self.summary(),
        }
