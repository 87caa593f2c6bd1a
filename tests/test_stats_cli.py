"""python -m fastnorm stats: per-channel statistics of a folder of files against float64
NumPy, on dask's threaded and processes schedulers and on a 2-worker LocalCluster (started
here on loopback); bad inputs fail with the file named and exit status 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("dask", reason="python -m fastnorm stats needs dask (the test extra)")
distributed = pytest.importorskip("distributed", reason="the cluster tests need distributed")
Image = pytest.importorskip("PIL.Image", reason="image inputs need Pillow (the test extra)")

from fastnorm import _dataset_inputs, _dataset_stats as S  # noqa: E402
from fastnorm.__main__ import main  # noqa: E402
from _helpers import rng_for  # noqa: E402


@pytest.fixture(scope="module")
def cluster_address():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    yield cluster.scheduler_address
    cluster.close()


def _image(rng, h, w, channels=3):
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A folder of PNGs of several sizes and .npy files (nested), a file of another type;
    returns (folder, the (values, 3) matrix of every value, float64)."""
    root = tmp_path_factory.mktemp("dataset")
    rng = rng_for("stats-cli")
    (root / "train" / "a").mkdir(parents=True)
    (root / "train" / "b").mkdir(parents=True)
    arrays = []
    for i, (h, w) in enumerate([(17, 23), (32, 32), (5, 40), (64, 9), (11, 11), (30, 7)]):
        img = _image(rng, h, w)
        Image.fromarray(img).save(root / "train" / ("a" if i % 2 else "b") / f"{i}.png")
        arrays.append(img)
    for i in range(2):
        arr = _image(rng, 13 + i, 8)
        np.save(root / "train" / f"extra{i}.npy", arr)
        arrays.append(arr)
    (root / "labels.csv").write_text("file,label\n")
    values = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64)
    return root, values, len(arrays)


def _run(capsys, *args):
    code = main(["stats", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _check(doc, values, files=None):
    assert doc["channels"] == values.shape[1]
    if files is not None:
        assert doc["files"] == files
    assert doc["count"] == [values.shape[0]] * values.shape[1]
    np.testing.assert_allclose(doc["mean"], values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(doc["std"], values.std(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(doc["min"], values.min(axis=0))
    np.testing.assert_array_equal(doc["max"], values.max(axis=0))


@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_folder_of_png_and_npy(capsys, dataset, cluster_address, where):
    root, values, files = dataset
    scheduler = cluster_address if where == "cluster" else "threads"
    code, out, err = _run(capsys, root, "--json", "--scheduler", scheduler)
    assert code == 0, err
    doc = json.loads(out)
    _check(doc, values, files)
    assert doc["dtypes"] == ["uint8"]
    np.testing.assert_allclose(doc["scaled"]["mean"], values.mean(axis=0) / 255, rtol=1e-12)
    np.testing.assert_allclose(doc["scaled"]["std"], values.std(axis=0) / 255, rtol=1e-12)
    assert doc["ignored"] == [str(root / "labels.csv")]


def test_text_output_and_processes_scheduler(capsys, dataset):
    root, values, files = dataset
    code, out, err = _run(capsys, root / "train", "--scheduler", "processes")
    assert code == 0, err
    assert f"{files} files, 3 channels, {values.shape[0]} values per channel (uint8)" in out
    mean01 = ", ".join(f"{v:.6f}" for v in values.mean(axis=0) / 255)
    assert f"mean=({mean01})" in out
    assert err == ""                   # not a terminal: no progress bar


def test_progress_bar_on_a_terminal(capsys, dataset, monkeypatch):
    pytest.importorskip("tqdm")
    root, _, files = dataset
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = _run(capsys, root, "--json")
    assert code == 0
    assert "fastnorm stats" in err and f"{files}/{files}" in err
    json.loads(out)                    # stdout holds only the JSON


def test_command_line_end_to_end(dataset):
    root, values, files = dataset
    result = subprocess.run([sys.executable, "-m", "fastnorm", "stats", str(root), "--json"],
                            capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    _check(json.loads(result.stdout), values, files)


def test_npz_zarr_channel_axis_and_slabs(capsys, tmp_path, monkeypatch):
    """Every array of an .npz, a zarr array, NCHW data with --channel-axis 1, and an .npy
    larger than a slab read in several tasks: all equal to NumPy over the same values."""
    rng = rng_for("arrays")
    a = rng.normal(50.0, 3.0, size=(4, 2, 6, 5)).astype(np.float32)     # NCHW
    b = rng.normal(50.0, 3.0, size=(3, 2, 7, 7))
    np.savez(tmp_path / "pair.npz", a=a, b=b)
    big = rng.normal(-7.0, 0.5, size=(40, 2, 9, 9))
    np.save(tmp_path / "big.npy", big)
    channels_last = [v.transpose(0, 2, 3, 1).reshape(-1, 2) for v in (a, b, big)]
    inputs = [tmp_path / "pair.npz", tmp_path / "big.npy"]
    try:
        import zarr
        z = zarr.open(str(tmp_path / "c.zarr"), mode="w", shape=(20, 2, 8, 8),
                      chunks=(4, 2, 8, 8), dtype="f8")          # read in 5 slabs too
        z[:] = c = rng.normal(50.0, 3.0, size=(20, 2, 8, 8))
        channels_last.append(c.transpose(0, 2, 3, 1).reshape(-1, 2))
        inputs.append(tmp_path / "c.zarr")
    except ImportError:
        pass
    values = np.concatenate([v.astype(np.float64) for v in channels_last])
    # big.npy: slabs of 3 samples of 1296 B
    monkeypatch.setattr(_dataset_inputs, "SLAB_BYTES", 4096)
    assert len(S.sources_of([("npy", str(tmp_path / "big.npy"))], 1)) == 14
    if len(inputs) == 3:
        assert len(S.sources_of([("zarr", str(tmp_path / "c.zarr"))], 1)) == 5
    code, out, err = _run(capsys, *inputs, "--channel-axis", "1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    _check(doc, values, files=len(inputs))
    assert doc["scaled"] is None
    code, out, err = _run(capsys, tmp_path / "big.npy", "--channel-axis", "none", "--json")
    assert code == 0, err
    _check(json.loads(out), big.reshape(-1, 1))


@pytest.fixture
def bad_folder(tmp_path, dataset):
    """A copy of part of the dataset plus one bad file (set by the test)."""
    rng = rng_for("bad")
    for i in range(3):
        Image.fromarray(_image(rng, 8, 8)).save(tmp_path / f"good{i}.png")
    return tmp_path


@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_unreadable_file_is_named(capsys, bad_folder, cluster_address, where):
    (bad_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    scheduler = cluster_address if where == "cluster" else "threads"
    code, out, err = _run(capsys, bad_folder, "--scheduler", scheduler)
    assert code == 2 and out == ""
    assert "broken.png" in err and "cannot read as an image" in err


@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_mismatched_channel_counts_are_named(capsys, bad_folder, cluster_address, where):
    Image.fromarray(_image(rng_for("gray"), 8, 8, channels=1)).save(bad_folder / "gray.png")
    scheduler = cluster_address if where == "cluster" else "threads"
    code, out, err = _run(capsys, bad_folder, "--json", "--scheduler", scheduler)
    assert code == 2 and out == ""
    assert "gray.png" in err and "inconsistent channel counts" in err
    assert "1 channel" in err and "has 3" in err


def test_other_bad_inputs(capsys, tmp_path, dataset, monkeypatch):
    root = dataset[0]
    monkeypatch.setattr(S, "CONNECT_TIMEOUT", "1s")
    code, _, err = _run(capsys, tmp_path / "missing")
    assert code == 2 and "missing: no such file or directory" in err
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = _run(capsys, tmp_path / "notes.txt")
    assert code == 2 and "notes.txt: not a supported input" in err
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    code, _, err = _run(capsys, tmp_path / "bad.npy")
    assert code == 2 and "bad.npy: cannot read as .npy" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, empty)
    assert code == 2 and "no input files found" in err
    np.save(tmp_path / "c.npy", np.zeros((3, 4), dtype=complex))
    code, _, err = _run(capsys, tmp_path / "c.npy")
    assert code == 2 and "c.npy" in err and "complex128" in err
    np.save(tmp_path / "b.npy", np.zeros((3, 4), dtype=bool))
    code, _, err = _run(capsys, tmp_path / "b.npy")
    assert code == 2 and "b.npy: dtype bool" in err
    code, _, err = _run(capsys, root / "train" / "extra0.npy", "--channel-axis", "5")
    assert code == 2 and "extra0.npy" in err and "no axis 5" in err
    code, _, err = _run(capsys, root, "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot connect" in err
    with pytest.raises(SystemExit) as exc:
        main(["stats"])
    assert exc.value.code == 2
    assert os.path.isdir(root)


@pytest.mark.parametrize("shape", [(1, 3), (7, 3), (4097, 1), (70001, 3), (1000, 7),
                                   (3, 5000)])
def test_column_extremes_match_numpy(shape):
    values = rng_for("extremes", shape).normal(size=shape)
    values[-1, 0] = np.nan if shape[0] > 1 else values[-1, 0]
    low, high = S._column_extremes(values)
    np.testing.assert_array_equal(low, values.min(axis=0))
    np.testing.assert_array_equal(high, values.max(axis=0))
    ints = (values * 10).astype(np.int16) if shape[0] == 1 else \
        np.nan_to_num(values * 10).astype(np.int16)
    np.testing.assert_array_equal(S._column_extremes(ints)[0], ints.min(axis=0))
