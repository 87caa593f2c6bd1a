"""User code of the PyTorch side of fastnorm: tensors through every public function and
fastnorm.torch. `mypy --strict` must accept it and infer the asserted types
(tests/test_typing.py, when torch is installed); it also runs as a script."""
import numpy as np
import torch
from torch import Tensor
from typing_extensions import assert_type

import fastnorm as fn
import fastnorm.torch as ft


def tensors() -> None:
    x = torch.randn(2, 4, 3, 3)
    c = x.shape[1]
    running_mean, running_var = torch.zeros(c), torch.ones(c)
    with torch.inference_mode():
        assert_type(fn.batch_norm(x, running_mean, running_var, training=True), Tensor)
        assert_type(fn.instance_norm(x, out=torch.empty_like(x)), Tensor)
        assert_type(fn.group_norm(x, 2, torch.ones(c), torch.zeros(c)), Tensor)
        y, mean, rstd = fn.group_norm(x, 2, return_stats=True)
        assert_type(rstd, Tensor)
        assert_type(fn.layer_norm(x, (3, 3)), Tensor)
        y, mean, rstd = fn.layer_norm(x, 3, return_stats=True)
        assert_type(mean, Tensor)
        assert_type(fn.rms_norm(x, 3), Tensor)
        assert_type(fn.channel_layer_norm(x, out=x), Tensor)
        m, v = fn.moments(x, axis=(0, 2, 3))
        assert_type(v, Tensor)
        assert m.shape == (c,)
        acc = fn.Moments(axis=0).update(x.reshape(-1, c))
        assert acc.count == x.numel() // c
        images = torch.randint(0, 256, (2, 5, 6, 3), dtype=torch.uint8)
        assert_type(fn.normalize_image(images, [0.5, 0.5, 0.5], [0.2, 0.2, 0.2]), Tensor)


def models() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    fast = ft.optimize(model)
    assert_type(fast, torch.nn.Sequential)
    assert_type(ft.optimize(model, inplace=True), torch.nn.Sequential)
    report = ft.report(fast)
    assert_type(report, ft.Report)
    names: list[str] = [entry.name for entry in report.taken]
    calls: int = sum(entry.fastnorm_calls for entry in report.taken)
    assert names == ["1"] and calls == 0 and str(report)
    with torch.inference_mode():
        y = fast(torch.randn(1, 3, 2, 2))
    assert isinstance(y, Tensor) and bool(np.isfinite(y.numpy()).all())


if __name__ == "__main__":
    tensors()
    models()
    print("user code ran")
