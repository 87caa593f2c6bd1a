"""Timing: interleaved rounds of several runners in one process, and how busy the machine was
meanwhile."""
import gc
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .runners import Runner

Snapshot = tuple[float, float | None, float]


@dataclass
class Settings:
    sample_time: float = 0.02     # seconds of back-to-back calls per sample
    case_budget: float = 5.0      # seconds of rounds per case (all runners, with pauses;
                                  # run() shares it between the phases by runner count)
    min_rounds: int = 5
    max_rounds: int = 25
    warmup_time: float = 0.02     # seconds of calls (at least 3) estimating a call's time
    settle: float = 0.008         # pause after each sample: OpenMP runtimes (libgomp: ours,
                                  # PyTorch's) spin ~6 ms after a parallel region
    presample_below: float = 0.002  # one untimed call before each sample of a runner
                                  # faster than this (caches, sleeping threads)


FULL = Settings()
QUICK = Settings(sample_time=0.01, case_budget=2.5, min_rounds=3, max_rounds=15,
                 warmup_time=0.01)


@dataclass
class Timing:
    median: float                 # seconds per call
    minimum: float
    samples: list[float] = field(default_factory=list)
    reps: int = 1


def _settle(runner: "Runner", settings: Settings) -> float:
    """The pause after a sample of `runner`: its own settle, or the settings'."""
    return settings.settle if runner.settle is None else runner.settle


def _timed(runner: "Runner", reps: int) -> float:
    call = runner.call
    with runner.entered():
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        t1 = time.perf_counter()
    return (t1 - t0) / reps


def measure(runners: Mapping[str, "Runner"], settings: Settings = FULL) -> dict[str, Timing]:
    """Time every runner (dict name -> Runner) interleaved; returns dict name -> Timing.

    Each round runs every runner once, in an order shuffled per round (so that no runner
    always follows the same one); each sample is preceded by an untimed call for fast runners
    and followed by a pause (Runner.settle or settings.settle) in which the idle threads of
    the runtime just used stop spinning, so one runner's background work is not charged to
    the next."""
    names = list(runners)
    if not names:
        return {}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        # warm-up: a first call (untimed), then calls until warmup_time has passed; the
        # fastest call estimates the call time (a load spike must not set the repeat count)
        per_call: dict[str, float] = {}
        for name in names:
            r = runners[name]
            if r.reset:
                r.reset()
            _timed(r, 1)
            n, spent, best = 0, 0.0, math.inf
            while n < 3 or spent < settings.warmup_time:
                t = _timed(r, 1)
                spent += t
                best = min(best, t)
                n += 1
                if spent > 4 * settings.sample_time:   # slow runner: enough
                    break
            per_call[name] = best
            time.sleep(_settle(r, settings))
        reps = {name: max(1, round(settings.sample_time / per_call[name])) for name in names}
        settle = {name: _settle(runners[name], settings) for name in names}
        presample = {name: per_call[name] < settings.presample_below for name in names}
        round_time = sum((reps[name] + presample[name]) * per_call[name] + settle[name]
                         for name in names)
        rounds = int(settings.case_budget / max(round_time, 1e-9))
        rounds = max(settings.min_rounds, min(settings.max_rounds, rounds))
        samples: dict[str, list[float]] = {name: [] for name in names}
        deadline = time.perf_counter() + 2 * settings.case_budget
        order = list(names)
        shuffle = np.random.default_rng(12345).shuffle
        for k in range(rounds):
            if k >= settings.min_rounds and time.perf_counter() > deadline:
                break           # a loaded machine: keep the run's length bounded
            shuffle(order)
            for name in order:
                r = runners[name]
                if r.reset:
                    r.reset()
                if presample[name]:
                    _timed(r, 1)
                samples[name].append(_timed(r, reps[name]))
                time.sleep(settle[name])
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(float(np.median(s)), float(min(s)), s, reps[name])
            for name, s in samples.items()}


# ---------------------------------------------------------------------------------------
# how busy the machine is

def cpu_snapshot() -> Snapshot:
    """(wall, busy CPU seconds of the whole machine, CPU seconds of this process); busy is None
    where /proc/stat is not available."""
    wall = time.perf_counter()
    t = os.times()
    own = t.user + t.system
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        v = [int(x) for x in fields[1:9]]
        busy: float | None = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        busy = None
    return wall, busy, own


def other_cpu(before: Snapshot, after: Snapshot) -> float | None:
    """CPUs (1.0 = one CPU fully) used by other processes, or stolen by the hypervisor,
    between two cpu_snapshot()s; None if unknown."""
    (w0, b0, o0), (w1, b1, o1) = before, after
    if b0 is None or b1 is None or w1 <= w0:
        return None
    return max(0.0, ((b1 - b0) - (o1 - o0)) / (w1 - w0))
