"""ONNX Runtime: a one-op ONNX model (or a short composite) built in memory with onnx,
intra_op_num_threads=threads, sequential execution. Importing this module imports
onnxruntime and onnx (only done when an ONNX Runtime runner is built)."""
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..cases import MOMENTUM
from . import Runner, Unavailable, for_op

if TYPE_CHECKING:
    from ..data import Setup

# onnxruntime, onnx.helper and onnx.numpy_helper (None when they cannot be imported); mypy
# does not analyse onnx and onnxruntime here (pyproject.toml), so their objects are Any
ort: Any
helper: Any
numpy_helper: Any
try:
    import onnxruntime as _ort
    from onnx import helper as _helper, numpy_helper as _numpy_helper
    ort, helper, numpy_helper = _ort, _helper, _numpy_helper
except Exception as exc:        # ImportError, or a broken install raising anything else
    ort = helper = numpy_helper = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

ORT_SETTLE = 0.04   # pause after ONNX Runtime samples (its threads spin ~30 ms after a run)

# the nodes (onnx NodeProto) computing Y from X, and their opset
Model = tuple[list[Any], int]

_BN_INPUTS = ["X", "scale", "bias", "mean", "var"]


def _node(op: str, inputs: Iterable[str], outputs: Iterable[str] = ("Y",),
          **attributes: Any) -> Any:
    """An onnx NodeProto."""
    return helper.make_node(op, list(inputs), list(outputs), **attributes)


def _batch_norm_eval(s: "Setup") -> Model:
    return [_node("BatchNormalization", _BN_INPUTS, epsilon=s.eps)], 15


def _batch_norm_train(s: "Setup") -> Model:
    # ONNX momentum is the weight of the old running value
    return [_node("BatchNormalization", _BN_INPUTS, ["Y", "RM", "RV"], epsilon=s.eps,
                  momentum=1 - MOMENTUM, training_mode=1)], 15


def _layer_norm(s: "Setup") -> Model:
    return [_node("LayerNormalization", ["X", "scale", "bias"], axis=-s.case.arg,
                  epsilon=s.eps)], 17


def _rms_norm(s: "Setup") -> Model:
    # RMSNormalization is opset 23
    return [_node("RMSNormalization", ["X", "scale"], axis=-s.case.arg, epsilon=s.eps)], 23


def _instance_norm(s: "Setup") -> Model:
    return [_node("InstanceNormalization", ["X", "scale", "bias"], epsilon=s.eps)], 15


def _group_norm(s: "Setup") -> Model:
    # opset 21: per-channel scale and bias (opset 18's were per group)
    return [_node("GroupNormalization", ["X", "scale", "bias"], num_groups=s.case.arg,
                  epsilon=s.eps)], 21


def _channel_layer_norm(s: "Setup") -> Model:
    ndim = len(s.case.shape)
    perm = [0] + list(range(2, ndim)) + [1]
    back = [0, ndim - 1] + list(range(1, ndim - 1))
    return [_node("Transpose", ["X"], ["Xt"], perm=perm),
            _node("LayerNormalization", ["Xt", "scale", "bias"], ["Yt"], axis=-1,
                  epsilon=s.eps),
            _node("Transpose", ["Yt"], ["Y"], perm=back)], 17


# op -> builder of (nodes X -> Y, opset) for a Setup
MODELS: dict[str, Callable[["Setup"], Model]] = {
    "batch_norm_eval": _batch_norm_eval,
    "batch_norm_train": _batch_norm_train,
    "layer_norm": _layer_norm,
    "rms_norm": _rms_norm,
    "instance_norm": _instance_norm,
    "group_norm": _group_norm,
    "channel_layer_norm": _channel_layer_norm,
}
NOTES = {"channel_layer_norm": "Transpose + LayerNormalization + Transpose"}


def model(setup: "Setup") -> Any:
    """The ONNX model of this case: its graph takes X, has the setup's parameters as
    initializers (those the nodes read) and returns Y (and any other node output, such as
    training BatchNormalization's running statistics)."""
    nodes, opset = for_op(MODELS, setup.case.op)(setup)
    elem = helper.np_dtype_to_tensor_dtype(setup.dtype)
    params = {"scale": setup.weight, "bias": setup.bias, "mean": setup.running_mean,
              "var": setup.running_var}
    read = {name for node in nodes for name in node.input}
    made = [name for node in nodes for name in node.output]
    inits = [numpy_helper.from_array(v, k) for k, v in params.items() if k in read]
    shapes = {"Y": list(setup.case.shape)}
    outputs = [helper.make_tensor_value_info(name, elem, shapes.get(name, [setup.case.shape[1]]))
               for name in made if name not in read]
    graph = helper.make_graph(nodes, setup.case.id,
                              [helper.make_tensor_value_info("X", elem, shapes["Y"])],
                              outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _session(onnx_model: Any, threads: int) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    err: Exception | None = None
    # the newest IR version this ONNX Runtime reads is not known up front: try downwards
    for ir in sorted({onnx_model.ir_version, 11, 10, 9}, reverse=True):
        if ir > onnx_model.ir_version:
            continue
        onnx_model.ir_version = ir
        try:
            return ort.InferenceSession(onnx_model.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:          # unsupported op/opset/IR: try lower IR, then give up
            err = exc
    raise Unavailable(f"ONNX Runtime cannot run this model: {_first_line(err)}")


def _first_line(exc: BaseException | None) -> str:
    return (str(exc).strip().splitlines() or ["?"])[0][:160] if exc else "?"


def runner(setup: "Setup") -> Runner:
    if ort is None:
        raise Unavailable(f"onnxruntime or onnx cannot be imported ({_IMPORT_ERROR})")
    if setup.case.channels_last:
        raise Unavailable("ONNX Runtime's normalization operators take NCHW (channels-last "
                          "data would be timed with its copy to NCHW)")
    sess = _session(model(setup), setup.threads)
    feed = {"X": setup.x0}

    def call() -> Any:
        return sess.run(["Y"], feed)[0]
    try:
        call()
    except Exception as exc:
        raise Unavailable(f"ONNX Runtime failed on this model: {_first_line(exc)}")
    # ONNX Runtime's pool keeps spinning ~30 ms after a run (measured here): the pause
    # keeps that spinning out of the next runner's time, without changing ORT's defaults
    return Runner(call, note=NOTES.get(setup.case.op, ""), settle=ORT_SETTLE)
