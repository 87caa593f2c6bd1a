"""Benchmark case set and runner for `python -m fastnorm` and benchmarks/ (DESIGN.md section 7).

Each case is a normalization on a float32 tensor drawn from a real workload. For a case,
`Setup` builds the data (random input, affine weight/bias, running statistics where the op
has them) and one *runner* per implementation:

  fastnorm        fastnorm in place (out=x)
  fastnorm_alloc  fastnorm allocating its output (out=None)
  numpy           plain vectorized float32 NumPy formulas
  roof            one in-place pass x = a*x + b over the same number of bytes, same threads
  torch           torch.nn.functional, torch.set_num_threads(threads), inference mode
  onnxruntime     a one-op ONNX model built in memory, intra_op_num_threads=threads

PyTorch, ONNX Runtime and onnx are optional and imported lazily: a peer that is not
installed (or an ONNX op that this ONNX Runtime cannot run) is reported as unavailable.

`measure` times all runners of one case in one process: a warm-up that also estimates each
runner's call time, then rounds interleaved (A B C, C A B, ..., the order shuffled each
round), each sample the mean of enough back-to-back calls to last a few milliseconds followed
by a short pause (other runtimes' idle threads spin for a while after a call), and the median
over the rounds; ratios are medians of the per-round ratios. `run` does that for a list of
cases after checking every runner's result against the NumPy result (a benchmark never times
a wrong kernel).
"""
import gc
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

DEFAULT_THREADS = 2
ORT_SETTLE = 0.04   # pause after ONNX Runtime samples (its threads spin ~30 ms after a run)
BUSY = 0.25         # ... or when other processes used more than this many CPUs meanwhile
NOISY = 0.2         # a case is flagged noisy when IQR/median of its times exceeds this
DTYPE = np.float32
EPS = 1e-5
MOMENTUM = 0.1

# every implementation, in table order
IMPLEMENTATIONS = ("fastnorm", "fastnorm_alloc", "numpy", "roof", "torch", "onnxruntime")
PEERS = {"torch": "torch", "onnxruntime": "onnxruntime"}   # implementation -> module needed


class Unavailable(Exception):
    """This implementation cannot run this case here (peer missing, op unsupported)."""


# ---------------------------------------------------------------------------------------
# the case set

@dataclass(frozen=True)
class Case:
    id: str                 # short identifier (pytest ids, JSON, --case filter)
    op: str                 # batch_norm_eval, batch_norm_train, layer_norm, instance_norm,
                            # group_norm, rms_norm, channel_layer_norm
    shape: tuple
    arg: int = 0            # layer_norm/rms_norm: number of normalized trailing dims;
                            # group_norm: number of groups
    quick: bool = False     # part of the --quick subset
    tiny: bool = False

    @property
    def label(self):
        if self.op in ("layer_norm", "rms_norm"):
            dims = "[-1]" if self.arg == 1 else "[" + ",".join(("C", "H", "W", "D")[
                len(self.shape) - self.arg - 1:][:self.arg]) + "]"
            return f"{self.op} {dims}"
        if self.op == "group_norm":
            return f"group_norm G={self.arg}"
        if self.op.startswith("batch_norm"):
            return "batch_norm " + self.op.rsplit("_", 1)[1]
        return self.op

    @property
    def shape_str(self):
        return "x".join(map(str, self.shape))

    @property
    def size(self):
        return math.prod(self.shape)

    def nbytes(self, dtype=DTYPE):
        return self.size * np.dtype(dtype).itemsize


def _case(op, shape, arg=0, quick=False, tiny=False):
    short = {"batch_norm_eval": "bn_eval", "batch_norm_train": "bn_train", "layer_norm": "ln",
             "instance_norm": "in", "group_norm": "gn", "rms_norm": "rms",
             "channel_layer_norm": "cln"}[op]
    if op in ("layer_norm", "rms_norm"):
        short += f"{arg}d"
    return Case(f"{short}_{'x'.join(map(str, shape))}", op, tuple(shape), arg, quick, tiny)


CASES = [
    _case("batch_norm_eval", (1, 64, 112, 112), quick=True),
    _case("batch_norm_eval", (32, 256, 56, 56)),
    _case("batch_norm_train", (8, 512, 28, 28), quick=True),
    _case("batch_norm_train", (32, 256, 56, 56)),
    _case("layer_norm", (8, 512, 768), 1, quick=True),
    _case("layer_norm", (1, 197, 768), 1),
    _case("layer_norm", (16, 256, 4096), 1),
    _case("layer_norm", (32, 64, 56, 56), 3),
    _case("instance_norm", (8, 64, 128, 128)),
    _case("group_norm", (8, 256, 56, 56), 32, quick=True),
    _case("rms_norm", (16, 256, 4096), 1),
    _case("channel_layer_norm", (32, 96, 56, 56)),
    _case("layer_norm", (1, 768), 1, quick=True, tiny=True),
    _case("batch_norm_eval", (1, 64, 8, 8), quick=True, tiny=True),
]


def select_cases(quick=False, pattern=None):
    """The full case set, or the --quick subset; `pattern` keeps the cases whose id or label
    contains it."""
    cases = [c for c in CASES if c.quick or not quick]
    if pattern:
        cases = [c for c in cases if pattern in c.id or pattern in c.label]
    return cases


# ---------------------------------------------------------------------------------------
# optional peers

def peer_module(impl):
    """The imported peer module for `impl` ("torch", "onnxruntime"), or None if missing."""
    name = PEERS.get(impl)
    if name is None:
        return None
    try:
        if name == "onnxruntime":
            import onnx  # noqa: F401  (models are built with onnx.helper)
        return __import__(name)
    except Exception:           # ImportError, or a broken install raising anything else
        return None


def available_implementations():
    """Implementations whose packages are importable here, in table order."""
    return [impl for impl in IMPLEMENTATIONS if impl not in PEERS or peer_module(impl)]


def versions():
    out = {"numpy": np.__version__}
    for impl in PEERS:
        mod = peer_module(impl)
        out[impl] = getattr(mod, "__version__", "?") if mod else None
    return out


# ---------------------------------------------------------------------------------------
# NumPy formulas (float32 throughout, allocating, reasonably vectorized)

def _np_normalize(x, axes, eps, weight=None, bias=None):
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = np.square(d).mean(axis=axes, keepdims=True)
    d *= 1 / np.sqrt(var + np.float32(eps))
    if weight is not None:
        d *= weight
    if bias is not None:
        d += bias
    return d, mean, var


class Runner:
    """One implementation of one case: `call()` runs it once; `reset()` (may be None) restores
    its input buffer between rounds (not timed); `output()` the result of the last call;
    `context` a context manager factory entered around timed calls (torch inference mode);
    `settle` seconds to pause after its samples (None: Settings.settle) so that its idle
    worker threads stop spinning before the next runner is timed."""

    def __init__(self, call, output=None, reset=None, context=None, note="", settle=None):
        self.call = call
        self.reset = reset
        self.context = context
        self.note = note
        self.settle = settle
        self._output = output

    def output(self, last):
        return self._output() if self._output is not None else last


class Setup:
    """Data and runners of one case (all float32 by default)."""

    def __init__(self, case, threads=DEFAULT_THREADS, dtype=DTYPE, seed=0):
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
        c = shape[1]
        op = case.op
        if op in ("layer_norm", "rms_norm"):
            pshape = shape[len(shape) - case.arg:]
        else:
            pshape = (c,)
        # |weight / sqrt(var + eps)| < 1 so that repeated in-place application stays bounded
        self.weight = rng.uniform(0.5, 1.0, pshape).astype(self.dtype)
        self.bias = (0.1 * rng.standard_normal(pshape)).astype(self.dtype)
        if op.startswith("batch_norm"):
            self.running_mean = (0.5 + 0.1 * rng.standard_normal(c)).astype(self.dtype)
            self.running_var = rng.uniform(3.0, 5.0, c).astype(self.dtype)
        else:
            self.running_mean = self.running_var = None
        self.eps = 1e-6 if op in ("rms_norm", "channel_layer_norm") else EPS
        self._reference = None

    # -- parameters ----------------------------------------------------------------------

    def _running(self):
        """Fresh copies of the running statistics (each runner updates its own)."""
        if self.running_mean is None:
            return None, None
        return self.running_mean.copy(), self.running_var.copy()

    def _bshape(self):
        """Shape that broadcasts a (C,) vector over x."""
        return (1, -1) + (1,) * (len(self.case.shape) - 2)

    # -- the NumPy implementation and the reference ----------------------------------------

    def numpy_fn(self):
        """A callable computing the op with NumPy; its running stats are private copies."""
        case, eps, op = self.case, self.eps, self.case.op
        ndim = len(case.shape)
        rm, rv = self._running()
        bs = self._bshape()
        w, b = self.weight, self.bias
        if op == "batch_norm_eval":
            a = (w / np.sqrt(rv + np.float32(eps))).reshape(bs)
            m, b2 = rm.reshape(bs), b.reshape(bs)

            def f(x):
                y = x - m
                y *= a
                y += b2
                return y
        elif op == "batch_norm_train":
            axes = (0,) + tuple(range(2, ndim))
            n = case.size // case.shape[1]
            mom = np.float32(MOMENTUM)

            def f(x):
                y, mean, var = _np_normalize(x, axes, eps, w.reshape(bs), b.reshape(bs))
                rm[...] = (1 - mom) * rm + mom * mean.reshape(-1)
                rv[...] = (1 - mom) * rv + mom * var.reshape(-1) * np.float32(n / (n - 1))
                return y
        elif op == "layer_norm":
            axes = tuple(range(ndim - case.arg, ndim))

            def f(x):
                return _np_normalize(x, axes, eps, w, b)[0]
        elif op == "rms_norm":
            axes = tuple(range(ndim - case.arg, ndim))

            def f(x):
                ms = np.square(x).mean(axis=axes, keepdims=True)
                y = x * (1 / np.sqrt(ms + np.float32(eps)))
                y *= w
                return y
        elif op == "instance_norm":
            axes = tuple(range(2, ndim))

            def f(x):
                return _np_normalize(x, axes, eps, w.reshape(bs), b.reshape(bs))[0]
        elif op == "group_norm":
            g = case.arg

            def f(x):
                xr = x.reshape(x.shape[0], g, -1)
                y = _np_normalize(xr, (2,), eps)[0].reshape(x.shape)
                y *= w.reshape(bs)
                y += b.reshape(bs)
                return y
        elif op == "channel_layer_norm":
            def f(x):
                return _np_normalize(x, (1,), eps, w.reshape(bs), b.reshape(bs))[0]
        else:
            raise ValueError(f"unknown op {op!r}")
        return f

    def reference(self):
        """The NumPy result on the input (computed once)."""
        if self._reference is None:
            self._reference = self.numpy_fn()(self.x0)
        return self._reference

    # -- fastnorm ------------------------------------------------------------------------

    def fastnorm_fn(self):
        """A callable f(x, out) running the op with fastnorm; private running stats."""
        import fastnorm as fn
        case, eps, op, nt = self.case, self.eps, self.case.op, self.threads
        w, b = self.weight, self.bias
        rm, rv = self._running()
        if op in ("batch_norm_eval", "batch_norm_train"):
            training = op == "batch_norm_train"

            def f(x, out):
                return fn.batch_norm(x, rm, rv, w, b, training, MOMENTUM, eps, out=out,
                                     num_threads=nt)
        elif op == "layer_norm":
            ns = case.shape[len(case.shape) - case.arg:]

            def f(x, out):
                return fn.layer_norm(x, ns, w, b, eps, out=out, num_threads=nt)
        elif op == "rms_norm":
            ns = case.shape[len(case.shape) - case.arg:]

            def f(x, out):
                return fn.rms_norm(x, ns, w, eps, out=out, num_threads=nt)
        elif op == "instance_norm":
            def f(x, out):
                return fn.instance_norm(x, None, None, w, b, True, MOMENTUM, eps, out=out,
                                        num_threads=nt)
        elif op == "group_norm":
            g = case.arg

            def f(x, out):
                return fn.group_norm(x, g, w, b, eps, out=out, num_threads=nt)
        elif op == "channel_layer_norm":
            def f(x, out):
                return fn.channel_layer_norm(x, w, b, eps, out=out, num_threads=nt)
        else:
            raise ValueError(f"unknown op {op!r}")
        return f

    # -- torch ---------------------------------------------------------------------------

    def _torch_runner(self):
        torch = peer_module("torch")
        if torch is None:
            raise Unavailable("torch is not installed")
        import torch.nn.functional as F
        torch.set_num_threads(self.threads)
        case, eps, op = self.case, self.eps, self.case.op
        xt = torch.from_numpy(self.x0)
        w, b = torch.from_numpy(self.weight), torch.from_numpy(self.bias)
        rm, rv = self._running()
        if rm is not None:
            rm, rv = torch.from_numpy(rm), torch.from_numpy(rv)
        note = ""
        if op in ("batch_norm_eval", "batch_norm_train"):
            training = op == "batch_norm_train"

            def call():
                return F.batch_norm(xt, rm, rv, w, b, training, MOMENTUM, eps)
        elif op == "layer_norm":
            ns = case.shape[len(case.shape) - case.arg:]

            def call():
                return F.layer_norm(xt, ns, w, b, eps)
        elif op == "rms_norm":
            ns = case.shape[len(case.shape) - case.arg:]

            def call():
                return F.rms_norm(xt, ns, w, eps)
        elif op == "instance_norm":
            def call():
                return F.instance_norm(xt, None, None, w, b, True, MOMENTUM, eps)
        elif op == "group_norm":
            g = case.arg

            def call():
                return F.group_norm(xt, g, w, b, eps)
        elif op == "channel_layer_norm":
            # timm's LayerNorm2d: permute to channels-last, layer_norm, permute back (a view)
            c = case.shape[1]
            perm = (0,) + tuple(range(2, len(case.shape))) + (1,)
            back = (0, len(case.shape) - 1) + tuple(range(1, len(case.shape) - 1))

            def call():
                return F.layer_norm(xt.permute(perm), (c,), w, b, eps).permute(back)
            note = "permute + layer_norm + permute"
        else:
            raise ValueError(f"unknown op {op!r}")

        def output():
            return call().numpy()
        return Runner(call, output=output, context=torch.inference_mode, note=note)

    # -- ONNX Runtime --------------------------------------------------------------------

    def _onnx_model(self):
        """(model, note) for this case: a one-op graph X -> Y (or a short composite)."""
        from onnx import TensorProto, helper, numpy_helper
        case, eps, op = self.case, self.eps, self.case.op
        shape, ndim = list(case.shape), len(case.shape)
        elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        inits = {"scale": self.weight, "bias": self.bias}
        outputs = [helper.make_tensor_value_info("Y", elem, shape)]
        nodes, opset, note = [], 17, ""
        if op in ("batch_norm_eval", "batch_norm_train"):
            inits["mean"], inits["var"] = self.running_mean, self.running_var
            inputs = ["X", "scale", "bias", "mean", "var"]
            opset = 15
            if op == "batch_norm_eval":
                nodes.append(helper.make_node("BatchNormalization", inputs, ["Y"], epsilon=eps))
            else:
                # ONNX momentum is the weight of the old running value
                nodes.append(helper.make_node("BatchNormalization", inputs,
                                              ["Y", "RM", "RV"], epsilon=eps,
                                              momentum=1 - MOMENTUM, training_mode=1))
                c = case.shape[1]
                outputs += [helper.make_tensor_value_info(n, elem, [c]) for n in ("RM", "RV")]
        elif op == "layer_norm":
            nodes.append(helper.make_node("LayerNormalization", ["X", "scale", "bias"], ["Y"],
                                          axis=-case.arg, epsilon=eps))
        elif op == "rms_norm":
            # RMSNormalization is opset 23
            del inits["bias"]
            nodes.append(helper.make_node("RMSNormalization", ["X", "scale"], ["Y"],
                                          axis=-case.arg, epsilon=eps))
            opset = 23
        elif op == "instance_norm":
            nodes.append(helper.make_node("InstanceNormalization", ["X", "scale", "bias"],
                                          ["Y"], epsilon=eps))
            opset = 15
        elif op == "group_norm":
            # opset 21: per-channel scale and bias (opset 18's were per group)
            nodes.append(helper.make_node("GroupNormalization", ["X", "scale", "bias"], ["Y"],
                                          num_groups=case.arg, epsilon=eps))
            opset = 21
        elif op == "channel_layer_norm":
            perm = [0] + list(range(2, ndim)) + [1]
            back = [0, ndim - 1] + list(range(1, ndim - 1))
            nodes += [helper.make_node("Transpose", ["X"], ["Xt"], perm=perm),
                      helper.make_node("LayerNormalization", ["Xt", "scale", "bias"], ["Yt"],
                                       axis=-1, epsilon=eps),
                      helper.make_node("Transpose", ["Yt"], ["Y"], perm=back)]
            note = "Transpose + LayerNormalization + Transpose"
        else:
            raise ValueError(f"unknown op {op!r}")
        graph = helper.make_graph(
            nodes, case.id, [helper.make_tensor_value_info("X", elem, shape)], outputs,
            initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return model, note

    def _ort_runner(self):
        ort = peer_module("onnxruntime")
        if ort is None:
            raise Unavailable("onnxruntime (or onnx) is not installed")
        model, note = self._onnx_model()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        err = None
        # the newest IR version this ONNX Runtime reads is not known up front: try downwards
        for ir in sorted({model.ir_version, 11, 10, 9}, reverse=True):
            if ir > model.ir_version:
                continue
            model.ir_version = ir
            try:
                sess = ort.InferenceSession(model.SerializeToString(), so,
                                            providers=["CPUExecutionProvider"])
                break
            except Exception as exc:          # unsupported op/opset/IR: try lower IR, then give up
                err = exc
        else:
            first = str(err).strip().splitlines()[0] if err else "?"
            raise Unavailable(f"ONNX Runtime cannot run this model: {first[:160]}")
        feed = {"X": self.x0}

        def call():
            return sess.run(["Y"], feed)[0]
        try:
            call()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0]
            raise Unavailable(f"ONNX Runtime failed on this model: {first[:160]}")
        # ONNX Runtime's pool keeps spinning ~30 ms after a run (measured here): the pause
        # keeps that spinning out of the next runner's time, without changing ORT's defaults
        return Runner(call, note=note, settle=ORT_SETTLE)

    # -- all runners -------------------------------------------------------------------

    def runner(self, impl):
        """The Runner of `impl`; raises Unavailable when it cannot run here."""
        if impl == "fastnorm":
            f = self.fastnorm_fn()
            buf = self.x0.copy()
            return Runner(lambda: f(buf, buf), output=lambda: buf,
                          reset=lambda: np.copyto(buf, self.x0))
        if impl == "fastnorm_alloc":
            f = self.fastnorm_fn()
            x0 = self.x0
            return Runner(lambda: f(x0, None))
        if impl == "numpy":
            f = self.numpy_fn()
            x0 = self.x0
            return Runner(lambda: f(x0))
        if impl == "roof":
            from . import _dispatch
            roof = _dispatch.kernels().roof
            buf = self.x0.copy().reshape(-1)
            nt = self.threads
            # a = -1, b = 0: bounded under repetition and checkable (x -> -x)
            return Runner(lambda: roof(buf, -1.0, 0.0, nt), output=lambda: buf,
                          reset=lambda: np.copyto(buf, self.x0.reshape(-1)))
        if impl == "torch":
            return self._torch_runner()
        if impl == "onnxruntime":
            return self._ort_runner()
        raise ValueError(f"unknown implementation {impl!r}")

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
        if runner.context:
            with runner.context():
                got = np.asarray(runner.output(runner.call()))
        else:
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
        """Max |error| accepted vs the float32 NumPy result (outputs are O(1))."""
        return 1e-4 if self.dtype == np.float32 else 1e-9


# ---------------------------------------------------------------------------------------
# timing

@dataclass
class Settings:
    sample_time: float = 0.02     # seconds of back-to-back calls per sample
    case_budget: float = 5.0      # seconds of rounds per case (all runners, with pauses)
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
    samples: list = field(default_factory=list)
    reps: int = 1


def _timed(runner, reps):
    call = runner.call
    if runner.context:
        with runner.context():
            t0 = time.perf_counter()
            for _ in range(reps):
                call()
            t1 = time.perf_counter()
    else:
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        t1 = time.perf_counter()
    return (t1 - t0) / reps


def measure(runners, settings=FULL):
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
        per_call = {}
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
            time.sleep(settings.settle if r.settle is None else r.settle)
        reps = {name: max(1, round(settings.sample_time / per_call[name])) for name in names}
        settle = {name: settings.settle if runners[name].settle is None
                  else runners[name].settle for name in names}
        presample = {name: per_call[name] < settings.presample_below for name in names}
        round_time = sum((reps[name] + presample[name]) * per_call[name] + settle[name]
                         for name in names)
        rounds = int(settings.case_budget / max(round_time, 1e-9))
        rounds = max(settings.min_rounds, min(settings.max_rounds, rounds))
        samples = {name: [] for name in names}
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

def _cpu_snapshot():
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
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        busy = None
    return wall, busy, own


def other_cpu(before, after):
    """CPUs (1.0 = one CPU fully) used by other processes, or stolen by the hypervisor,
    between two _cpu_snapshot()s; None if unknown."""
    (w0, b0, o0), (w1, b1, o1) = before, after
    if b0 is None or b1 is None or w1 <= w0:
        return None
    return max(0.0, ((b1 - b0) - (o1 - o0)) / (w1 - w0))


# ---------------------------------------------------------------------------------------
# a whole run

@dataclass
class CaseResult:
    case: Case
    times: dict = field(default_factory=dict)        # impl -> median seconds per call
    samples: dict = field(default_factory=dict)      # impl -> seconds per call, each round
    errors: dict = field(default_factory=dict)       # impl -> max |error| vs NumPy
    unavailable: dict = field(default_factory=dict)  # impl -> reason
    wrong: dict = field(default_factory=dict)        # impl -> message (failed the check)
    notes: dict = field(default_factory=dict)        # impl -> how it is computed
    rounds: int = 0
    reps: dict = field(default_factory=dict)
    seconds: float = 0.0                             # wall time spent on the case
    others: float = None     # CPUs used by other processes while the case was timed

    @property
    def ok(self):
        """fastnorm's result matched NumPy (both runners)."""
        return not any(impl in self.wrong for impl in ("fastnorm", "fastnorm_alloc"))

    def ratio(self, num, den):
        """Time of `num` / time of `den`: the median over rounds of the ratio within a round
        (robust to drifting load on a shared machine), None if either did not run."""
        a, b = self.samples.get(num), self.samples.get(den)
        if not a or not b or len(a) != len(b):
            a, b = self.times.get(num), self.times.get(den)
            return a / b if a and b else None
        return float(np.median([x / y for x, y in zip(a, b)]))

    def spread(self, impl):
        """Interquartile range / median of `impl`'s per-round times (None if not timed)."""
        a = self.samples.get(impl)
        if not a:
            return None
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        return float((q3 - q1) / med) if med > 0 else None

    @property
    def noisy(self):
        """The in-place or roof times varied by more than NOISY between rounds, or other
        processes used more than BUSY CPUs meanwhile: the figures are not to be trusted."""
        return ((self.others or 0) > BUSY
                or any((self.spread(i) or 0) > NOISY for i in ("fastnorm", "roof")))

    @property
    def gbps(self):
        t = self.times.get("fastnorm")
        return 2 * self.case.nbytes() / t / 1e9 if t else None

    def summary(self):
        """The derived figures the table and the JSON report."""
        return {
            "gb_per_s": self.gbps,                                  # 2 * nbytes / in-place
            "time_per_roof": self.ratio("fastnorm", "roof"),
            "alloc_per_roof": self.ratio("fastnorm_alloc", "roof"),
            "speedup_numpy": self.ratio("numpy", "fastnorm"),
            "speedup_torch": self.ratio("torch", "fastnorm"),
            "speedup_onnxruntime": self.ratio("onnxruntime", "fastnorm"),
        }

    def to_dict(self):
        c = self.case
        return {
            "id": c.id, "label": c.label, "op": c.op, "shape": list(c.shape),
            "dtype": np.dtype(DTYPE).name, "nbytes": c.nbytes(), "tiny": c.tiny,
            "times_s": dict(self.times), "samples_s": dict(self.samples),
            "max_abs_error": dict(self.errors),
            "unavailable": dict(self.unavailable), "wrong": dict(self.wrong),
            "notes": {k: v for k, v in self.notes.items() if v},
            "rounds": self.rounds, "reps": dict(self.reps), "seconds": self.seconds,
            "spread_iqr_over_median": {k: self.spread(k) for k in self.samples},
            "noisy": self.noisy, "other_processes_cpus": self.others,
            **self.summary(),
        }


def run_case(case, threads=DEFAULT_THREADS, settings=FULL, implementations=None):
    """Check then time one case; returns a CaseResult. A runner whose result does not match
    NumPy is not timed (fastnorm failing shows in `result.ok`)."""
    t0 = time.perf_counter()
    impls = list(implementations or IMPLEMENTATIONS)
    setup = Setup(case, threads)
    res = CaseResult(case)
    runners = {}
    for impl in impls:
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
            res.wrong[impl] = f"max |error| {err:.3g} vs NumPy exceeds {tol:g}"
            continue
        res.notes[impl] = r.note
        runners[impl] = r
    before = _cpu_snapshot()
    timings = measure(runners, settings)
    res.others = other_cpu(before, _cpu_snapshot())
    res.times = {k: t.median for k, t in timings.items()}
    res.samples = {k: list(t.samples) for k, t in timings.items()}
    res.reps = {k: t.reps for k, t in timings.items()}
    res.rounds = len(next(iter(timings.values())).samples) if timings else 0
    res.seconds = time.perf_counter() - t0
    return res


def run(cases=None, threads=DEFAULT_THREADS, quick=False, settings=None, callback=None):
    """Run `cases` (default: the full or quick set); `callback(result)` after each case."""
    cases = select_cases(quick) if cases is None else cases
    settings = settings or (QUICK if quick else FULL)
    impls = available_implementations()
    results = []
    for case in cases:
        res = run_case(case, threads, settings, impls)
        for impl in IMPLEMENTATIONS:
            if impl not in impls:
                res.unavailable.setdefault(impl, f"{PEERS[impl]} is not installed")
        results.append(res)
        if callback:
            callback(res)
    return results


# ---------------------------------------------------------------------------------------
# presentation

def fmt_time(t):
    """Seconds as a fixed-width (8) string with a unit."""
    if t is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if t >= scale or unit == "ns":
            v = t / scale
            digits = 0 if v >= 100 else 1 if v >= 10 else 2
            return f"{v:.{digits}f} {unit}"


def _fmt(v, spec, suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def table_columns(impls):
    """(title, width, getter) of the table's columns; peers only when available."""
    cols = [
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


def table_header(impls):
    cols = table_columns(impls)
    head = "  ".join(t.ljust(w) if i < 2 else t.rjust(w) for i, (t, w, _) in enumerate(cols))
    return head + "\n" + "-" * len(head)


def table_row(result, impls):
    cells = []
    for i, (_, w, get) in enumerate(table_columns(impls)):
        s = "FAILED" if (not result.ok and i == 3) else str(get(result))
        cells.append(s.ljust(w) if i < 2 else s.rjust(w))
    return "  ".join(cells)


def table_notes(results):
    """Lines under the table: unavailable or wrong peers, how composite peers run."""
    lines = []
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
    seen = set()
    for r in results:
        for impl, note in r.notes.items():
            if note and (r.case.op, impl) not in seen:
                seen.add((r.case.op, impl))
                lines.append(f"{r.case.label}: {impl} runs {note}")
    return lines


def plot(results, path, threads=DEFAULT_THREADS):
    """Bar chart (log scale) of each implementation's time / roof per case. Needs matplotlib;
    raises ImportError with a hint if it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install matplotlib "
                          "(or pip install 'fastnorm-kernels[plot]')") from exc
    impls = [i for i in IMPLEMENTATIONS if i != "roof"
             and any(i in r.times for r in results)]
    labels = {"fastnorm": "fastnorm in place", "fastnorm_alloc": "fastnorm allocating",
              "numpy": "NumPy", "torch": "PyTorch", "onnxruntime": "ONNX Runtime"}
    colors = {"fastnorm": "#1f77b4", "fastnorm_alloc": "#aec7e8", "numpy": "#7f7f7f",
              "torch": "#ff7f0e", "onnxruntime": "#2ca02c"}
    n = len(results)
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * n + 2), 5.5))
    for k, impl in enumerate(impls):
        xs, ys = [], []
        for i, r in enumerate(results):
            v = r.ratio(impl, "roof")
            if v:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(v)
        ax.bar(xs, ys, width, label=labels.get(impl, impl), color=colors.get(impl))
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
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
