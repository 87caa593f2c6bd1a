"""benchmarks/torch_models.py run once on small configs, so that it cannot rot: every model
builds, its optimized copy gives the plain model's output and runs fastnorm in every norm
module. (The measurement itself: python benchmarks/torch_models.py.)"""
import importlib.util
import pathlib

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


def _script():
    path = pathlib.Path(__file__).with_name("torch_models.py")
    spec = importlib.util.spec_from_file_location("fastnorm_torch_models_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["resnet", "convnext", "vit", "llama", "style"])
def test_model_benchmark_quick(name):
    bench = _script()
    if bench.MODELS[name][2]:
        pytest.importorskip("transformers", reason="transformers is not installed")
    r = bench.measure(name, quick=True, rounds=1, warmup=0)
    assert r["taken"] > 0 and r["fastnorm_calls"] == r["taken"] and not r["own_calls"], r
    assert r["max_abs_diff"] < 1e-3, r
    assert r["plain_s"] > 0 and r["optimized_s"] > 0
    assert 0 < r["norm_share"] < 1 and r["bound"] == pytest.approx(1 / (1 - r["norm_share"]))
