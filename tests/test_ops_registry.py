"""The op registry the suites iterate (tests/_ops.py) describes the public API as it is: a
record for every public function, each record's parameters, arguments, mode flags and
default eps as in the function's signature, its reference taking the same arguments. A
parameter added to or dropped from the API fails here instead of silently escaping the
validation, reliability and accuracy suites."""
import inspect

import fastnorm
from _ops import EVAL, FAST, NORMS, OPS, PLAIN, RUNNING

# the API's arguments that are not math: the reference formulas do not take them
NOT_MATH = {"out", "num_threads", "return_stats", "dtype", "keepdims"}


def test_registry_matches_the_public_api():
    functions = {op.function for op in OPS.values()}
    public = {name for name in fastnorm.__all__ if callable(getattr(fastnorm, name))
              and name not in ("Moments", "build_info", "normalize_image")}
    # (normalize_image is no normalization of float tensors: tests/test_image.py)
    assert functions == public, "records for %s, public functions %s" % (
        sorted(functions), sorted(public))
    for op in OPS.values():
        sig = inspect.signature(op.fn).parameters
        names = [n for n in sig if n not in ("x", "out")]
        assert list(op.params) == [n for n in names if n in RUNNING + ("weight", "bias")], (
            op.name, names)
        assert list(op.scalars) == [n for n in names if n not in op.params], (op.name, names)
        if "eps" in sig:
            assert op.eps == sig["eps"].default, op.name
        for flag, _ in op.flags:
            assert flag in op.scalars, (op.name, flag)
        if op.running:
            assert op.takes_running, op.name
        math_args = (set(op.params) | set(op.scalars)) - NOT_MATH
        missing = math_args - set(inspect.signature(op.reference).parameters)
        assert not missing, "%s: the reference takes no %s" % (op.name, sorted(missing))
    # the selections: one record per normalization function where the suites need that
    norms = {op.function for op in OPS.values() if op.is_norm}
    for selection in (NORMS, PLAIN):
        assert sorted(op.function for op in selection) == sorted(norms)
    assert {op.function for op in EVAL} == {op.function for op in NORMS if op.running}
    assert all(op.stats == "running" and op.running for op in EVAL)
    assert {op.name for op in FAST} == {"batch_norm_eval", "layer_norm", "rms_norm"}
