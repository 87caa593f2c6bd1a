"""`Setup`: one case's data (input, affine parameters, running statistics), its runners and
their correctness check against the float64 formulas of fastnorm._reference."""
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .. import _reference as ref
from .cases import DEFAULT_THREADS, DTYPE, EPS, MOMENTUM, Case
from .runners import Runner, build

# op -> the float64 reference output for a Setup's input
_REFERENCES: dict[str, Callable[["Setup"], NDArray[Any]]] = {
    "batch_norm_eval": lambda s: ref.ref_batch_norm(
        s.x0, s.running_mean, s.running_var, s.weight, s.bias, False, MOMENTUM, s.eps)[0],
    "batch_norm_train": lambda s: ref.ref_batch_norm(
        s.x0, s.running_mean, s.running_var, s.weight, s.bias, True, MOMENTUM, s.eps)[0],
    "layer_norm": lambda s: ref.ref_layer_norm(
        s.x0, s.case.normalized_shape, s.weight, s.bias, s.eps)[0],
    "rms_norm": lambda s: ref.ref_rms_norm(s.x0, s.case.normalized_shape, s.weight, s.eps),
    "instance_norm": lambda s: ref.ref_instance_norm(
        s.x0, None, None, s.weight, s.bias, True, MOMENTUM, s.eps)[0],
    "group_norm": lambda s: ref.ref_group_norm(s.x0, s.case.arg, s.weight, s.bias, s.eps)[0],
    "channel_layer_norm": lambda s: ref.ref_channel_layer_norm(s.x0, s.weight, s.bias, s.eps),
}


class Setup:
    """Data and runners of one case (all float32 by default); the same seed gives the same
    data, so a Setup made again for the second phase times what the first one checked."""

    case: Case

    def __init__(self, case: Case, threads: int = DEFAULT_THREADS, dtype: DTypeLike = DTYPE,
                 seed: int = 0) -> None:
        if case.op not in _REFERENCES:
            raise ValueError(f"unknown op {case.op!r}")
        self.case = case
        self.threads = int(threads)
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        shape = case.shape
        # mean 0.5, std 2: stats matter, outputs stay O(1)
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= 2
        x += 0.5
        self.x0: NDArray[Any] = x.astype(self.dtype, copy=False)
        if case.channels_last:      # the same values in (N, *spatial, C) memory
            self.x0 = np.moveaxis(np.ascontiguousarray(np.moveaxis(self.x0, 1, -1)), -1, 1)
        c = shape[1]
        pshape = case.normalized_shape if case.op in ("layer_norm", "rms_norm") else (c,)
        # |weight / sqrt(var + eps)| < 1 so that repeated in-place application stays bounded
        self.weight: NDArray[Any] = rng.uniform(0.5, 1.0, pshape).astype(self.dtype)
        self.bias: NDArray[Any] = (0.1 * rng.standard_normal(pshape)).astype(self.dtype)
        if case.op.startswith("batch_norm"):
            self.running_mean: NDArray[Any] | None = (0.5 + 0.1 * rng.standard_normal(c)).astype(self.dtype)
            self.running_var: NDArray[Any] | None = rng.uniform(3.0, 5.0, c).astype(self.dtype)
        else:
            self.running_mean = self.running_var = None
        self.eps: float = 1e-6 if case.op in ("rms_norm", "channel_layer_norm") else EPS
        self._reference: NDArray[Any] | None = None

    def running(self) -> tuple[NDArray[Any] | None, NDArray[Any] | None]:
        """Fresh copies of the running statistics (each runner updates its own)."""
        if self.running_mean is None or self.running_var is None:
            return None, None
        return self.running_mean.copy(), self.running_var.copy()

    @property
    def channel_shape(self) -> tuple[int, ...]:
        """Shape that broadcasts a (C,) vector over x."""
        return (1, -1) + (1,) * (len(self.case.shape) - 2)

    def runner(self, impl: str) -> Runner:
        """The Runner of `impl`; raises Unavailable when it cannot run here."""
        return build(self, impl)

    def reference(self) -> NDArray[Any]:
        """The float64 reference result on the input (computed once)."""
        if self._reference is None:
            self._reference = _REFERENCES[self.case.op](self)
        return self._reference

    def expected(self, impl: str) -> NDArray[Any]:
        """What one call of `impl` on a fresh buffer must produce."""
        if impl == "roof":
            return -self.x0.reshape(-1)
        return self.reference()

    def check(self, impl: str, runner: Runner | None = None) -> tuple[float, float]:
        """Run `impl` once on fresh data; returns (max |error| vs its expectation, tolerance).
        Leaves the runner's buffer reset."""
        runner = runner if runner is not None else self.runner(impl)
        if runner.reset:
            runner.reset()
        with runner.entered():
            got = np.asarray(runner.output(runner.call()))
        want = self.expected(impl)
        if got.shape != want.shape:
            raise AssertionError(f"{impl}: shape {got.shape}, expected {want.shape}")
        err = float(np.max(np.abs(got - want))) if want.size else 0.0
        if not np.isfinite(err):
            err = math.inf
        if runner.reset:
            runner.reset()
        return err, self.tolerance()

    def tolerance(self) -> float:
        """Max |error| accepted vs the float64 reference (outputs are O(1))."""
        return 1e-4 if self.dtype == np.float32 else 1e-9
