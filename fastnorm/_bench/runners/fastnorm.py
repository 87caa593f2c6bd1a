"""fastnorm in place (out=x), allocating (out=None), and the roof: one in-place pass
x = a*x + b over the same bytes with the same threads."""
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

import fastnorm as fn

from ... import _dispatch
from ..cases import MOMENTUM
from . import Runner, Unavailable, for_op, named_table

if TYPE_CHECKING:
    from ..data import Setup
    from ..images import ImageSetup

# f(x, out): the op on x into out (None: allocated)
Call = Callable[[NDArray[Any], NDArray[Any] | None], NDArray[Any]]


def _batch_norm(training: bool) -> Callable[["Setup"], Call]:
    def build(s: "Setup") -> Call:
        batch_norm, (rm, rv) = fn.batch_norm, s.running()
        w, b, eps, nt = s.weight, s.bias, s.eps, s.threads

        def f(x: NDArray[Any], out: NDArray[Any] | None) -> NDArray[Any]:
            y: NDArray[Any] = batch_norm(x, rm, rv, w, b, training, MOMENTUM, eps, out=out,
                                         num_threads=nt)
            return y
        return f
    return build


def _layer_norm(s: "Setup") -> Call:
    layer_norm, ns = fn.layer_norm, s.case.normalized_shape
    w, b, eps, nt = s.weight, s.bias, s.eps, s.threads
    return lambda x, out: layer_norm(x, ns, w, b, eps, out=out, num_threads=nt)


def _rms_norm(s: "Setup") -> Call:
    rms_norm, ns = fn.rms_norm, s.case.normalized_shape
    w, eps, nt = s.weight, s.eps, s.threads
    return lambda x, out: rms_norm(x, ns, w, eps, out=out, num_threads=nt)


def _instance_norm(s: "Setup") -> Call:
    instance_norm = fn.instance_norm
    w, b, eps, nt = s.weight, s.bias, s.eps, s.threads
    return lambda x, out: instance_norm(x, None, None, w, b, True, MOMENTUM, eps, out=out,
                                        num_threads=nt)


def _group_norm(s: "Setup") -> Call:
    group_norm, g = fn.group_norm, s.case.arg
    w, b, eps, nt = s.weight, s.bias, s.eps, s.threads
    return lambda x, out: group_norm(x, g, w, b, eps, out=out, num_threads=nt)


def _channel_layer_norm(s: "Setup") -> Call:
    channel_layer_norm = fn.channel_layer_norm
    w, b, eps, nt = s.weight, s.bias, s.eps, s.threads
    return lambda x, out: channel_layer_norm(x, w, b, eps, out=out, num_threads=nt)


# op -> builder of f(x, out) for a Setup (private running statistics)
FUNCTIONS: dict[str, Callable[["Setup"], Call]] = named_table(globals())


def _in_place_buffer(x0: NDArray[Any]) -> tuple[NDArray[Any], Callable[[], None]]:
    """(buffer, reset) where reset() restores the buffer to x0 between rounds. The buffer
    keeps x0's memory layout (order="K"): a channels-last case is timed on channels-last
    memory, not on a C-contiguous copy."""
    buf = x0.copy(order="K")
    return buf, lambda: np.copyto(buf, x0)


def _in_place_runner(setup: "Setup", x0: NDArray[Any]) -> Runner:
    f = for_op(FUNCTIONS, setup.case.op)(setup)
    buf, reset = _in_place_buffer(x0)
    return Runner(lambda: f(buf, buf), output=lambda: buf, reset=reset)


def in_place(setup: "Setup") -> Runner:
    return _in_place_runner(setup, setup.x0)


def in_place_nchw(setup: "Setup") -> Runner:
    """fastnorm in place on the case's values in NCHW-contiguous memory: timed beside a
    channels-last case, the ratio of the two is what channels-last memory costs."""
    if not setup.case.channels_last:
        raise Unavailable("the case is in NCHW memory already")
    return _in_place_runner(setup, np.ascontiguousarray(setup.x0))


def allocating(setup: "Setup") -> Runner:
    f = for_op(FUNCTIONS, setup.case.op)(setup)
    x0 = setup.x0
    return Runner(lambda: f(x0, None))


def roof(setup: "Setup") -> Runner:
    kernel, nt = _dispatch.kernels().roof, setup.threads
    buf, reset = _in_place_buffer(setup.x0.reshape(-1))
    # a = -1, b = 0: bounded under repetition and checkable (x -> -x)
    return Runner(lambda: kernel(buf, -1.0, 0.0, nt), output=lambda: buf, reset=reset)


# ---------------------------------------------------------------------------------------
# images (fastnorm._bench.images)

def _image_call(s: "ImageSetup") -> Callable[[NDArray[np.float32] | None], NDArray[Any]]:
    normalize_image, x, nt = fn.normalize_image, s.images, s.threads
    layout, mode = s.case.layout, s.case.mode
    if s.standard:
        mean, std = s.mean, s.std
        return lambda out: normalize_image(x, mean, std, layout=layout, out=out,
                                           num_threads=nt)
    return lambda out: normalize_image(x, mode=mode, layout=layout, out=out, num_threads=nt)


def image_runner(setup: "ImageSetup") -> Runner:
    f = _image_call(setup)
    buf = np.empty(setup.out_shape(), np.float32)
    return Runner(lambda: f(buf), output=lambda: buf)


def image_runner_alloc(setup: "ImageSetup") -> Runner:
    f = _image_call(setup)
    return Runner(lambda: f(None))


def image_roof(setup: "ImageSetup") -> Runner:
    if setup.images.dtype != np.uint8:
        raise Unavailable("the roof kernel reads uint8")
    kernel, nt = _dispatch.kernels().image_roof, setup.threads
    x = setup.images.reshape(-1)
    y = np.empty(x.size, np.float32)
    a = 1.0 / setup.max_value
    return Runner(lambda: kernel(x, y, a, 0.0, nt), output=lambda: y)
