"""The one table of fastnorm's operations that the test suites iterate.

Each record (`Op`) is one way of calling a public function: BatchNorm in training (with and
without running statistics) and in eval mode, InstanceNorm on the statistics of x (with and
without running statistics) and on running statistics, GroupNorm, LayerNorm, RMSNorm,
channels-first LayerNorm, and `moments`. A record knows which parameters the function
takes, its mode flags and default eps, whether it has running statistics or return_stats,
how to build a valid call, how its elements fall into normalization groups, its float64
reference (fastnorm._reference) and its PyTorch float32 peer.

Suites parametrize over `OPS` or a selection of it and call `op.call(...)` / `op.ref(...)`:

    OPS      every record, by name (batch_norm_train, ..., moments)
    NORMS    one record per normalization function: statistics of x, every parameter the
             function takes (running statistics included) -- what `valid_call` builds
    PLAIN    the normalizations on the statistics of x without running statistics
    EVAL     the normalizations on running statistics (batch_norm / instance_norm eval)
    FAST     the forms with a kernel fast path for plain arguments

`arg` is the one shape argument of an op, in the suites' short form: num_groups for
group_norm, the number k of trailing dims that layer_norm / rms_norm normalize
(normalized_shape = x.shape[-k:], a tuple; 1 when None), the axis of moments.
"""

import dataclasses
import math

import numpy as np

import fastnorm
from fastnorm import _reference
from _helpers import rng_for

RUNNING = ("running_mean", "running_var")


# --------------------------------------------------------------------------------------
# what differs between the functions
# --------------------------------------------------------------------------------------

def _group_labels(function, shape, arg, per_row):
    """Label of the normalization group of every element (an array of x's shape)."""
    if per_row is not None:                     # layer_norm, rms_norm: rows of per_row
        return (np.arange(math.prod(shape)) // per_row).reshape(shape)
    N, C = shape[:2]
    inner = math.prod(shape[2:])
    n = np.arange(N).reshape(N, 1, 1)
    c = np.arange(C).reshape(1, C, 1)
    s = np.arange(inner).reshape(1, 1, inner)
    lab = {
        "batch_norm": c + 0 * n + 0 * s,
        "instance_norm": n * C + c + 0 * s,
        "group_norm": n * (arg or 1) + c // (C // (arg or 1)) + 0 * s,
        "channel_layer_norm": n * inner + s + 0 * c,
    }[function]
    return np.broadcast_to(lab, (N, C, inner)).reshape(shape)


def _torch_peer(function, F, t, x, w, b, nshape, num_groups, eps):
    """PyTorch on tensor t (statistics of x), the function's defaults otherwise."""
    if function == "batch_norm":
        return F.batch_norm(t, None, None, w, b, True, 0.1, eps)
    if function == "instance_norm":
        return F.instance_norm(t, None, None, w, b, True, 0.1, eps)
    if function == "group_norm":
        return F.group_norm(t, num_groups, w, b, eps)
    if function == "layer_norm":
        return F.layer_norm(t, list(nshape), w, b, eps)
    if function == "rms_norm":
        return F.rms_norm(t, list(nshape), w, eps)
    if function == "channel_layer_norm":       # LayerNorm over C at every position
        perm = (0,) + tuple(range(2, x.ndim)) + (1,)
        inv = tuple(int(i) for i in np.argsort(perm))
        return F.layer_norm(t.permute(perm), (x.shape[1],), w, b, eps).permute(inv)
    raise ValueError(function)


# --------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Op:
    name: str                     # the record's name (ids, seeds)
    function: str                 # fastnorm.<function>
    params: tuple                 # array parameters the function takes, in its order
    scalars: tuple                # its other arguments but x and out, in its order
    eps: object                   # its default eps (None: finfo(x.dtype).eps)
    shape_arg: object = None      # "num_groups", "normalized_shape", "axis" or None
    flags: tuple = ()             # (keyword, value): the mode this record calls it in
    stats: str = "batch"          # normalizes with the statistics of x, or "running" ones
    running: bool = False         # this form passes running_mean / running_var
    per_element: bool = False     # weight / bias shaped like normalized_shape, else (C,)
    centered: bool = True         # subtracts the mean: a constant group gives the bias
    fast_path: bool = False       # plain calls of this form try the kernels' fast path
    min_ndim: int = 2

    # ---- facts ------------------------------------------------------------------------
    @property
    def fn(self):
        return getattr(fastnorm, self.function)

    @property
    def reference(self):
        return getattr(_reference, "ref_" + self.function)

    @property
    def is_norm(self):
        return self.function != "moments"

    @property
    def takes_running(self):
        return "running_mean" in self.params

    @property
    def return_stats(self):
        return "return_stats" in self.scalars

    @property
    def mode_flag(self):
        """The keyword of the mode flag (training / use_input_stats), or None."""
        return self.flags[0][0] if self.flags else None

    def __repr__(self):
        return "Op(%s)" % self.name

    # ---- shapes -----------------------------------------------------------------------
    def normalized_shape(self, shape, arg=None):
        k = 1 if arg is None else arg
        return tuple(shape[len(shape) - k:])

    def param_shape(self, shape, arg=None):
        """Shape of weight / bias for x of `shape`."""
        return self.normalized_shape(shape, arg) if self.per_element else (shape[1],)

    def expand(self, param, shape):
        """A weight or bias broadcast to x's shape (as the op applies it)."""
        if self.per_element:
            return np.broadcast_to(param, shape)
        return np.broadcast_to(param.reshape((1, -1) + (1,) * (len(shape) - 2)), shape)

    def groups(self, shape, arg=None):
        """Label of the normalization group of every element of x of `shape`."""
        per_row = math.prod(self.normalized_shape(shape, arg)) if self.per_element else None
        return _group_labels(self.function, tuple(shape), arg, per_row)

    # ---- calls ------------------------------------------------------------------------
    def kwargs(self, x, weight=None, bias=None, running=None, arg=None, **kw):
        """The keywords of fastnorm.<function>(x, ...) for this form; `running` is
        (running_mean, running_var) or None; kw are passed on (and win)."""
        call = {}
        if self.shape_arg == "normalized_shape":
            call["normalized_shape"] = self.normalized_shape(np.shape(x), arg)
        elif self.shape_arg is not None:
            call[self.shape_arg] = arg
        if running is not None:
            assert self.takes_running, "%s takes no running statistics" % self.function
            call["running_mean"], call["running_var"] = running
        for name, value in (("weight", weight), ("bias", bias)):
            if name in self.params:
                call[name] = value
            else:
                assert value is None, "%s takes no %s" % (self.function, name)
        call.update(self.flags)
        call.update(kw)
        return call

    def call(self, x, weight=None, bias=None, running=None, arg=None, **kw):
        """fastnorm.<function> on x in this form (running statistics updated in place)."""
        return self.fn(x, **self.kwargs(x, weight, bias, running, arg, **kw))

    def ref(self, x, weight=None, bias=None, running=None, arg=None, **kw):
        """The float64 reference of the same call, as a tuple whose first item is y
        (moments: (mean, var)). Compute it before a call that updates `running`."""
        kw = self.kwargs(x, weight, bias, running, arg, **kw)
        for name in ("out", "num_threads", "return_stats", "dtype"):
            kw.pop(name, None)
        res = self.reference(x, **kw)
        return res if isinstance(res, tuple) else (res,)

    def outputs(self, result, running=None):
        """Every array a call produced: y, returned statistics, updated running ones."""
        res = list(result) if isinstance(result, tuple) else [result]
        if running is not None and self.stats == "batch":
            res += list(running)
        return res

    def torch(self, x, weight=None, bias=None, arg=None):
        """PyTorch's result (x's dtype, as NumPy) of this normalization on the statistics of
        x with the default eps. Needs torch (callers importorskip it)."""
        import torch
        t = torch.from_numpy(np.ascontiguousarray(x))
        w = None if weight is None else torch.from_numpy(weight)
        b = None if bias is None else torch.from_numpy(bias)
        return _torch_peer(self.function, torch.nn.functional, t, x, w, b,
                           self.normalized_shape(x.shape, arg), arg, self.eps).numpy()

    def valid_call(self, dtype, shape, *seed, normalized_shape=None):
        """x of `shape` and a valid keyword set with every parameter this form passes
        (num_groups 2; normalized_shape: shape[2:] unless given; momentum 0.1; eps the
        default, 1e-6 where that is None); seed: rng_for keys."""
        assert self.is_norm, self.name
        rng = rng_for(*seed)
        x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
        c = shape[1] if len(shape) > 1 else 1
        w = rng.uniform(0.5, 1.5, c).astype(dtype)
        b = rng.normal(0, 1, c).astype(dtype)
        rm = rng.normal(0, 1, c).astype(dtype)
        rv = rng.uniform(0.5, 2, c).astype(dtype)
        nshape = shape[2:] if normalized_shape is None else normalized_shape
        pshape = (nshape,) if isinstance(nshape, int) else nshape
        wn = rng.uniform(0.5, 1.5, pshape).astype(dtype)
        bn = rng.normal(0, 1, pshape).astype(dtype)
        kw = {}
        if self.shape_arg == "num_groups":
            kw["num_groups"] = 2
        elif self.shape_arg == "normalized_shape":
            kw["normalized_shape"] = nshape
        if self.running:
            kw.update(running_mean=rm, running_var=rv)
        kw["weight"] = wn if self.per_element else w
        if "bias" in self.params:
            kw["bias"] = bn if self.per_element else b
        kw.update(self.flags)
        if "momentum" in self.scalars:
            kw["momentum"] = 0.1
        kw["eps"] = 1e-6 if self.eps is None else self.eps
        return x, kw


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------

_CHANNEL = ("weight", "bias")
_THREADS = ("num_threads",)


def _records():
    bn = dict(function="batch_norm", params=RUNNING + _CHANNEL,
              scalars=("training", "momentum", "eps") + _THREADS, eps=1e-5)
    inorm = dict(function="instance_norm", params=RUNNING + _CHANNEL,
                 scalars=("use_input_stats", "momentum", "eps") + _THREADS, eps=1e-5,
                 min_ndim=3)
    return [
        Op("batch_norm_train", flags=(("training", True),), running=True, **bn),
        Op("batch_norm_nostats", flags=(("training", True),), **bn),
        Op("batch_norm_eval", flags=(("training", False),), stats="running", running=True,
           fast_path=True, **bn),
        Op("instance_norm", flags=(("use_input_stats", True),), **inorm),
        Op("instance_norm_stats", flags=(("use_input_stats", True),), running=True, **inorm),
        Op("instance_norm_eval", flags=(("use_input_stats", False),), stats="running",
           running=True, **inorm),
        Op("group_norm", "group_norm", _CHANNEL,
           ("num_groups", "eps", "return_stats") + _THREADS, 1e-5, shape_arg="num_groups"),
        Op("layer_norm", "layer_norm", _CHANNEL,
           ("normalized_shape", "eps", "return_stats") + _THREADS, 1e-5,
           shape_arg="normalized_shape", per_element=True, fast_path=True, min_ndim=1),
        Op("rms_norm", "rms_norm", ("weight",), ("normalized_shape", "eps") + _THREADS, None,
           shape_arg="normalized_shape", per_element=True, centered=False, fast_path=True,
           min_ndim=1),
        Op("channel_layer_norm", "channel_layer_norm", _CHANNEL, ("eps",) + _THREADS, 1e-6),
        Op("moments", "moments", (), ("axis", "ddof", "keepdims", "dtype") + _THREADS, None,
           shape_arg="axis", min_ndim=0),
    ]


OPS = {op.name: op for op in _records()}
NORMS = tuple(op for op in OPS.values()
              if op.is_norm and op.stats == "batch" and op.running == op.takes_running)
PLAIN = tuple(op for op in OPS.values() if op.is_norm and op.stats == "batch"
              and not op.running)
EVAL = tuple(op for op in OPS.values() if op.stats == "running")
FAST = tuple(op for op in OPS.values() if op.fast_path)


def by_function(selection):
    """{function name: record} of a selection with one record per function."""
    table = {op.function: op for op in selection}
    assert len(table) == len(selection), "more than one record per function"
    return table


def eval_form(op):
    """The record of op's function that normalizes with running statistics."""
    return by_function(EVAL)[op.function]


def fn_id(value):
    """pytest ids: a record by its function's name (suites with one record per function)."""
    return value.function if isinstance(value, Op) else None


def name_id(value):
    """pytest ids: a record by its own name."""
    return value.name if isinstance(value, Op) else None
