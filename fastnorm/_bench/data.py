"""`Setup`: one case's data (input, affine parameters, running statistics), its runners and
their correctness check against the float64 formulas of fastnorm._reference."""
import math

import numpy as np

from .. import _reference as ref
from .cases import DEFAULT_THREADS, DTYPE, EPS, MOMENTUM
from .runners import build

# op -> the float64 reference output for a Setup's input
_REFERENCES = {
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

    def __init__(self, case, threads=DEFAULT_THREADS, dtype=DTYPE, seed=0):
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
        self.x0 = x.astype(self.dtype, copy=False)
        if case.channels_last:      # the same values in (N, *spatial, C) memory
            self.x0 = np.moveaxis(np.ascontiguousarray(np.moveaxis(self.x0, 1, -1)), -1, 1)
        c = shape[1]
        pshape = case.normalized_shape if case.op in ("layer_norm", "rms_norm") else (c,)
        # |weight / sqrt(var + eps)| < 1 so that repeated in-place application stays bounded
        self.weight = rng.uniform(0.5, 1.0, pshape).astype(self.dtype)
        self.bias = (0.1 * rng.standard_normal(pshape)).astype(self.dtype)
        if case.op.startswith("batch_norm"):
            self.running_mean = (0.5 + 0.1 * rng.standard_normal(c)).astype(self.dtype)
            self.running_var = rng.uniform(3.0, 5.0, c).astype(self.dtype)
        else:
            self.running_mean = self.running_var = None
        self.eps = 1e-6 if case.op in ("rms_norm", "channel_layer_norm") else EPS
        self._reference = None

    def running(self):
        """Fresh copies of the running statistics (each runner updates its own)."""
        if self.running_mean is None:
            return None, None
        return self.running_mean.copy(), self.running_var.copy()

    @property
    def channel_shape(self):
        """Shape that broadcasts a (C,) vector over x."""
        return (1, -1) + (1,) * (len(self.case.shape) - 2)

    def runner(self, impl):
        """The Runner of `impl`; raises Unavailable when it cannot run here."""
        return build(self, impl)

    def reference(self):
        """The float64 reference result on the input (computed once)."""
        if self._reference is None:
            self._reference = _REFERENCES[self.case.op](self)
        return self._reference

    def expected(self, impl):
        """What one call of `impl` on a fresh buffer must produce."""
        if impl == "roof":
            return -self.x0.reshape(-1)
        return self.reference()

    def check(self, impl, runner=None):
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

    def tolerance(self):
        """Max |error| accepted vs the float64 reference (outputs are O(1))."""
        return 1e-4 if self.dtype == np.float32 else 1e-9
