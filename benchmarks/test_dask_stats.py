"""benchmarks/dask_stats.py, run once in its --quick form so that it cannot rot: every
measurement there checks its result against float64 NumPy before it is timed."""
import importlib.util
import json
import pathlib

import pytest

pytest.importorskip("distributed", reason="the benchmark runs on a dask.distributed cluster")
pytest.importorskip("PIL", reason="the benchmark decodes PNGs with Pillow")


def test_dask_stats_benchmark_quick(capsys):
    path = pathlib.Path(__file__).with_name("dask_stats.py")
    spec = importlib.util.spec_from_file_location("dask_stats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    errors = doc["moments"]["var_relative_error"]
    assert errors["fastnorm"] < 1e-6 and errors["fastnorm at mean 1e4, std 0.01"] < 1e-6
    assert set(doc["images"]["images_per_s"]) == {
        "plain Pillow + NumPy loop", "fastnorm stats, threads",
        "fastnorm stats, 2-worker cluster"}
