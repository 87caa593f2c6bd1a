"""A whole run in two phases: fastnorm, NumPy and the roof for every case before any peer
has run in the process, then the peers beside fastnorm in place (see the package
docstring)."""
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from .cases import DEFAULT_THREADS, Case, select_cases
from .data import Setup
from .results import CaseResult, PhaseTimes
from .runners import (IMPLEMENTATIONS, PEERS, Runner, Unavailable, applies,
                      available_implementations, missing)
from .timing import FULL, QUICK, Settings, cpu_snapshot, measure, other_cpu

PHASE_1 = tuple(impl for impl in IMPLEMENTATIONS if impl not in PEERS)
BESIDE_PEERS = "fastnorm"      # timed again in phase 2: the peers' ratios are per round


class CheckedSetup(Protocol):
    """What the phases need of a case's setup (data.Setup, images.ImageSetup)."""
    case: Any

    def runner(self, impl: str) -> Runner: ...

    def check(self, impl: str, runner: Runner) -> tuple[float, float]: ...


def checked_runner(setup: CheckedSetup, impl: str) -> Runner:
    """The Runner of `impl` for `setup`, after one call on fresh data matched the reference
    (benchmarks/: the pytest-benchmark suites); Unavailable when it cannot run here, an
    AssertionError naming the error when its result is wrong."""
    runner = setup.runner(impl)
    err, tol = setup.check(impl, runner)
    assert err <= tol, (f"{impl} on {setup.case.id}: max |error| {err:.3g} vs the float64 "
                        f"reference exceeds {tol:g}")
    return runner


def _checked_runners(setup: CheckedSetup, impls: Iterable[str], res: CaseResult,
                     missing_modules: Callable[[str], list[str]] | None = None
                     ) -> dict[str, Runner]:
    """The runners of `impls` whose result on fresh data matches the reference; the others
    are recorded in `res` (unavailable or wrong) and not timed. missing_modules(impl): the
    modules an implementation needs that are not installed (then it is unavailable)."""
    runners: dict[str, Runner] = {}
    for impl in impls:
        absent = missing_modules(impl) if missing_modules is not None else []
        if absent:
            res.unavailable[impl] = f"{', '.join(absent)} not installed"
            continue
        try:
            r = setup.runner(impl)
        except Unavailable as exc:
            res.unavailable[impl] = str(exc)
            continue
        try:
            err, tol = setup.check(impl, r)
        except Exception as exc:               # a crash is a wrong result, not a crash of the run
            res.wrong[impl] = f"{type(exc).__name__}: {exc}"
            continue
        res.errors[impl] = err
        if not err <= tol:
            res.wrong[impl] = f"max |error| {err:.3g} vs the float64 reference exceeds {tol:g}"
            continue
        res.notes[impl] = r.note
        runners[impl] = r
    return runners


def _time_phase(res: CaseResult, runners: dict[str, Runner], settings: Settings,
                share: float | None = None) -> None:
    """Time `runners` interleaved and append the phase to `res`. The case's budget is shared
    between the phases by their number of runners (`share`: this phase's part, by default
    its runners among the IMPLEMENTATIONS that apply to the case)."""
    if share is None:
        share = len(runners) / sum(applies(i, res.case) for i in IMPLEMENTATIONS)
    phase_settings = dataclasses.replace(settings, case_budget=settings.case_budget * share)
    before, t0 = cpu_snapshot(), time.perf_counter()
    timings = measure(runners, phase_settings)
    res.phases.append(PhaseTimes(
        samples={k: list(t.samples) for k, t in timings.items()},
        reps={k: t.reps for k, t in timings.items()},
        others=other_cpu(before, cpu_snapshot()), seconds=time.perf_counter() - t0))


def run_phase_1(case: Case, threads: int = DEFAULT_THREADS, settings: Settings = FULL,
                implementations: Sequence[str] | None = None) -> CaseResult:
    """Check then time fastnorm (in place, allocating), NumPy and the roof on one case;
    returns its CaseResult. A runner whose result is wrong is not timed (fastnorm failing
    shows in `result.ok`)."""
    t0 = time.perf_counter()
    impls = [i for i in (implementations or IMPLEMENTATIONS)
             if i in PHASE_1 and applies(i, case)]
    res = CaseResult(case)
    runners = _checked_runners(Setup(case, threads), impls, res)
    _time_phase(res, runners, settings)
    res.seconds += time.perf_counter() - t0
    return res


def run_phase_2(res: CaseResult, threads: int = DEFAULT_THREADS, settings: Settings = FULL,
                peers: Sequence[str] = tuple(PEERS)) -> None:
    """Check then time the peers on `res.case` on a fresh Setup (the same data), each round
    beside fastnorm in place when it passed phase 1; adds to `res`."""
    t0 = time.perf_counter()
    assert isinstance(res.case, Case)            # (images.run_images: the image table)
    setup = Setup(res.case, threads)
    runners = _checked_runners(setup, peers, res)
    if runners:
        if res.phases and BESIDE_PEERS in res.phases[0].samples:
            runners = {BESIDE_PEERS: setup.runner(BESIDE_PEERS), **runners}
        _time_phase(res, runners, settings)
    res.seconds += time.perf_counter() - t0


def run(cases: Sequence[Case] | None = None, threads: int = DEFAULT_THREADS, quick: bool = False,
        settings: Settings | None = None,
        progress: Callable[[int, CaseResult], Any] | None = None) -> list[CaseResult]:
    """Run `cases` (default: the full or quick set): phase 1 over all cases, then phase 2
    over all cases; `progress(phase, result)` after each case of each phase."""
    cases = select_cases(quick) if cases is None else cases
    settings = settings or (QUICK if quick else FULL)
    impls = available_implementations()
    peers = [impl for impl in impls if impl in PEERS]
    results: list[CaseResult] = []
    for case in cases:
        res = run_phase_1(case, threads, settings, impls)
        for impl in IMPLEMENTATIONS:
            if impl not in impls:
                res.unavailable.setdefault(impl, f"{', '.join(missing(impl))} not installed")
        results.append(res)
        if progress:
            progress(1, res)
    for res in results if peers else ():
        run_phase_2(res, threads, settings, peers)
        if progress:
            progress(2, res)
    return results
