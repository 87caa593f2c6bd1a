"""The "numpy" implementation: plain vectorized float32 NumPy formulas, allocating, with
private running statistics. (The correctness check uses fastnorm._reference, not these.)"""
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..cases import MOMENTUM
from . import Runner, Unavailable, for_op

if TYPE_CHECKING:
    from ..data import Setup
    from ..images import ImageSetup

# f(x): the op on x, allocating its output
Call = Callable[[NDArray[Any]], NDArray[Any]]


def _normalize(x: NDArray[Any], axes: tuple[int, ...], eps: float,
               weight: NDArray[Any] | None = None, bias: NDArray[Any] | None = None
               ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = np.square(d).mean(axis=axes, keepdims=True)
    d *= 1 / np.sqrt(var + np.float32(eps))
    if weight is not None:
        d *= weight
    if bias is not None:
        d += bias
    return d, mean, var


def _trailing_axes(s: "Setup") -> tuple[int, ...]:
    ndim = len(s.case.shape)
    return tuple(range(ndim - s.case.arg, ndim))


def _batch_norm_eval(s: "Setup") -> Call:
    rm, rv = s.running()
    assert rm is not None and rv is not None      # a BatchNorm case has them
    bs = s.channel_shape
    a = (s.weight / np.sqrt(rv + np.float32(s.eps))).reshape(bs)
    m, b = rm.reshape(bs), s.bias.reshape(bs)

    def f(x: NDArray[Any]) -> NDArray[Any]:
        y: NDArray[Any] = x - m
        y *= a
        y += b
        return y
    return f


def _batch_norm_train(s: "Setup") -> Call:
    rm, rv = s.running()
    assert rm is not None and rv is not None      # a BatchNorm case has them
    bs, eps = s.channel_shape, s.eps
    w, b = s.weight.reshape(bs), s.bias.reshape(bs)
    axes = (0,) + tuple(range(2, len(s.case.shape)))
    n = s.case.size // s.case.shape[1]
    mom = np.float32(MOMENTUM)

    def f(x: NDArray[Any]) -> NDArray[Any]:
        y, mean, var = _normalize(x, axes, eps, w, b)
        rm[...] = (1 - mom) * rm + mom * mean.reshape(-1)
        rv[...] = (1 - mom) * rv + mom * var.reshape(-1) * np.float32(n / (n - 1))
        return y
    return f


def _normalize_over(axes_of: Callable[["Setup"], tuple[int, ...]], per_channel: bool
                    ) -> Callable[["Setup"], Call]:
    """Builder of an affine normalization over the axes `axes_of(setup)` gives; weight and
    bias broadcast per channel or cover the normalized dims."""
    def build(s: "Setup") -> Call:
        axes, eps = axes_of(s), s.eps
        shape = s.channel_shape if per_channel else s.weight.shape
        w, b = s.weight.reshape(shape), s.bias.reshape(shape)
        return lambda x: _normalize(x, axes, eps, w, b)[0]
    return build


def _rms_norm(s: "Setup") -> Call:
    axes, eps, w = _trailing_axes(s), np.float32(s.eps), s.weight

    def f(x: NDArray[Any]) -> NDArray[Any]:
        ms = np.square(x).mean(axis=axes, keepdims=True)
        y: NDArray[Any] = x * (1 / np.sqrt(ms + eps))
        y *= w
        return y
    return f


def _group_norm(s: "Setup") -> Call:
    g, eps = s.case.arg, s.eps
    w, b = s.weight.reshape(s.channel_shape), s.bias.reshape(s.channel_shape)

    def f(x: NDArray[Any]) -> NDArray[Any]:
        y = _normalize(x.reshape(x.shape[0], g, -1), (2,), eps)[0].reshape(x.shape)
        y *= w
        y += b
        return y
    return f


# op -> builder of f(x) for a Setup
FUNCTIONS: dict[str, Callable[["Setup"], Call]] = {
    "batch_norm_eval": _batch_norm_eval,
    "batch_norm_train": _batch_norm_train,
    "layer_norm": _normalize_over(_trailing_axes, per_channel=False),
    "rms_norm": _rms_norm,
    "instance_norm": _normalize_over(lambda s: tuple(range(2, len(s.case.shape))), True),
    "group_norm": _group_norm,
    "channel_layer_norm": _normalize_over(lambda s: (1,), per_channel=True),
}


def runner(setup: "Setup") -> Runner:
    f = for_op(FUNCTIONS, setup.case.op)(setup)
    x0 = setup.x0
    return Runner(lambda: f(x0))


# ---------------------------------------------------------------------------------------
# images (fastnorm._bench.images): float32 NumPy as preprocessing code writes it

def image_runner(setup: "ImageSetup") -> Runner:
    x, case = setup.images, setup.case
    to_planes = (2, 0, 1) if case.single else (0, 3, 1, 2)
    if setup.standard:
        scale = np.float32(1 / setup.max_value)
        # float32 (C,) vectors (what np.float32 of a tuple makes)
        mean = np.array(setup.mean, dtype=np.float32)
        std = np.array(setup.std, dtype=np.float32)

        def f() -> NDArray[np.float32]:
            y = x.astype(np.float32) * scale
            y -= mean
            y /= std
            return np.ascontiguousarray(y.transpose(to_planes)) if case.layout == "NCHW" \
                else y
        return Runner(f)
    if case.mode != "image_per_channel":
        raise Unavailable(f"no NumPy runner for mode {case.mode!r}")
    axes = (-3, -2)

    def per_channel() -> NDArray[np.float32]:
        y = x.astype(np.float32)
        m = y.mean(axis=axes, keepdims=True)
        s = y.std(axis=axes, keepdims=True)
        y -= m
        y /= s + np.float32(1e-4)
        np.clip(y, -20, 20, out=y)
        return np.ascontiguousarray(y.transpose(to_planes)) if case.layout == "NCHW" else y
    return Runner(per_channel)
