"""User code that calls every public function of fastnorm: `mypy --strict` must accept it
and infer the types asserted here (tests/test_typing.py); it also runs as a script."""
import pickle
from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import NDArray
from typing_extensions import assert_type

import fastnorm as fn
import fastnorm.dask as fnd

F32 = NDArray[np.float32]


def normalizations() -> None:
    x: F32 = np.random.default_rng(0).standard_normal((2, 4, 3, 3), dtype=np.float32)
    c = x.shape[1]
    running_mean, running_var = np.zeros(c, np.float32), np.ones(c, np.float32)
    weight, bias = np.ones(c, np.float32), np.zeros(c, np.float32)

    assert_type(fn.batch_norm(x, running_mean, running_var, weight, bias, training=True,
                              momentum=0.1, eps=1e-5, num_threads=1), F32)
    y = np.empty_like(x)
    assert_type(fn.batch_norm(x, running_mean, running_var, out=y), F32)
    assert_type(fn.instance_norm(x, weight=weight, bias=bias), F32)
    assert_type(fn.instance_norm(x, running_mean, running_var, use_input_stats=False), F32)
    assert_type(fn.group_norm(x, 2, weight, bias), F32)
    y, mean, rstd = fn.group_norm(x, 2, return_stats=True)
    assert_type(rstd, F32)
    assert_type(fn.layer_norm(x, (3, 3)), F32)
    assert_type(fn.layer_norm(x, x.shape[1:], out=x), F32)
    y, mean, rstd = fn.layer_norm(x, 3, return_stats=True)
    assert_type(mean, F32)
    flag: bool = bool(x.size)
    either = fn.layer_norm(x, 3, return_stats=flag)
    assert isinstance(either, tuple)
    assert_type(fn.rms_norm(x, [3], np.ones(3, np.float32)), F32)
    assert_type(fn.rms_norm(x.astype(np.float64), 3, eps=1e-6), NDArray[np.float64])
    assert_type(fn.channel_layer_norm(x, weight, bias, eps=1e-6), F32)
    # array-likes are converted as NumPy does
    assert_type(fn.layer_norm([[1.0, 2.0], [3.0, 5.0]], 2), NDArray[Any])


def statistics() -> None:
    x: F32 = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    mean, var = fn.moments(x)
    assert_type(mean, np.float32)
    m, v = fn.moments(x, axis=(0, 2), ddof=1, keepdims=True, num_threads=2)
    assert_type(v, F32)
    assert_type(fn.moments(x, axis=-1, dtype=np.float64)[0], NDArray[np.float64])
    assert_type(fn.moments(x, dtype=np.float64)[1], np.float64)

    acc = fn.Moments(axis=(0, 2))
    assert_type(acc.update(x).update(x, num_threads=1), fn.Moments)
    other = fn.Moments(axis=[0, 2]).update(x)
    total = acc.copy().merge(other) + other
    count: int = total.count
    per_channel = total.mean
    assert isinstance(per_channel, np.ndarray) and per_channel.shape == (3,)
    spread = total.std(ddof=1) / np.sqrt(total.var())
    assert count == 4 * 2 * 4 and np.all(np.asarray(spread) > 0)
    axis = total.axis
    assert axis == (0, 2)
    assert pickle.loads(pickle.dumps(total)).count == count


def images() -> None:
    img = np.zeros((5, 6, 3), np.uint8)
    assert_type(fn.normalize_image(img, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                NDArray[np.float32])
    batch = fn.normalize_image([img, img], mode="image_per_channel", layout="NHWC",
                               dtype=np.float64, num_threads=1)
    assert_type(batch, NDArray[np.float64])
    out = np.empty((2, 3, 5, 6), np.float32)
    assert_type(fn.normalize_image(np.stack([img, img]), scale=1 / 255, swap_rb=True,
                                   out=out), NDArray[np.float32])
    assert batch.shape == (2, 5, 6, 3)
    # integer statistics: float64 results
    mean, var = fn.moments(img)
    assert_type(mean, np.float64)
    per_channel, _ = fn.moments(img, axis=(0, 1))
    assert_type(per_channel, NDArray[np.float64])


def build() -> None:
    info = fn.build_info()
    version: str = info["version"]
    threads: int = info["max_threads"]
    assert version == fn.__version__ and threads >= 1 and isinstance(info["openmp"], bool)


def on_dask() -> None:
    # dask's own functions are not annotated: the ignores are for them, not fastnorm
    x = da.from_array(np.arange(48.0).reshape(4, 3, 2, 2),  # type: ignore[no-untyped-call]
                      chunks=(2, 3, 2, 2))
    mean, var = fnd.moments(x, axis=(0, 2, 3), split_every=2)
    assert_type(mean, da.Array)
    acc = fnd.accumulate(x, axis=(0, 2, 3))
    assert_type(acc, fn.Moments)
    running_mean, running_var = np.zeros(3), np.ones(3)
    outputs: list[da.Array] = [
        fnd.batch_norm(x, running_mean, running_var, training=True),
        fnd.instance_norm(x),
        fnd.group_norm(x, 3),
        fnd.layer_norm(x, (2, 2)),
        fnd.rms_norm(x, 2),
        fnd.channel_layer_norm(x),
    ]
    for y in outputs:
        assert y.compute().shape == x.shape  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    normalizations()
    statistics()
    images()
    build()
    on_dask()
    print("user code ran")
