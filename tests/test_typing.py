"""Type hints: the installed package ships py.typed and its stubs, `mypy --strict` passes on
the package and on user code that calls every public function (tests/typing/user_code.py),
rejects wrong calls, and stubtest finds the stubs in agreement with the runtime."""
import importlib
import importlib.resources
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import fastnorm

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent
USER_CODE = TESTS / "typing" / "user_code.py"
USER_CODE_TORCH = TESTS / "typing" / "user_code_torch.py"
PUBLIC_STUBS = ["__init__.pyi", "dask.pyi", "torch.pyi"]
# the public modules that need an optional library, and the library
OPTIONAL = {"fastnorm.dask": "dask.array", "fastnorm.torch": "torch"}


# mypy and stubtest in subprocesses that would inherit scripts/asan.sh's sanitizer runtime:
# nothing of fastnorm's compiled code runs there, and the other test runs check the types
_not_under_asan = pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                                     reason="type checks are not run under AddressSanitizer")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """One mypy cache for the module's runs (NumPy's stubs are analysed once)."""
    return str(tmp_path_factory.mktemp("mypy-cache"))


def _mypy(*args, cwd, cache):
    pytest.importorskip("mypy", reason="mypy is not installed (it is in the test extra)")
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", cache, *args],
                          cwd=cwd, capture_output=True, text=True)


def test_installed_package_is_typed():
    files = importlib.resources.files("fastnorm")
    assert files.joinpath("py.typed").is_file()
    for stub in PUBLIC_STUBS:
        assert files.joinpath(stub).is_file(), stub


@_not_under_asan
def test_mypy_strict_on_the_package(mypy_cache):
    if not (ROOT / "pyproject.toml").is_file() or not (ROOT / "fastnorm").is_dir():
        pytest.skip("needs the source tree")
    result = _mypy("--strict", "--config-file", "pyproject.toml", "-p", "fastnorm", cwd=ROOT,
                   cache=mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr


@_not_under_asan
def test_mypy_strict_on_user_code(tmp_path, mypy_cache):
    pytest.importorskip("dask.array", reason="the user code uses fastnorm.dask")
    # without torch, the stubs' Tensor overloads are Any to mypy and match any argument
    pytest.importorskip("torch", reason="the array overloads are told apart from the Tensor "
                                        "ones only where torch is installed")
    # from an empty directory with no configuration: the installed package, as a user has it
    result = _mypy("--strict", "--config-file=", str(USER_CODE), cwd=tmp_path, cache=mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr


@_not_under_asan
def test_mypy_strict_on_user_code_with_tensors(tmp_path, mypy_cache):
    pytest.importorskip("torch", reason="the tensor user code needs torch")
    result = _mypy("--strict", "--config-file=", str(USER_CODE_TORCH), cwd=tmp_path,
                   cache=mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr


@_not_under_asan
def test_mypy_rejects_wrong_calls(tmp_path, mypy_cache):
    wrong = tmp_path / "wrong.py"
    wrong.write_text(textwrap.dedent("""\
        import numpy as np
        import fastnorm as fn
        x = np.zeros((2, 3), np.float32)
        fn.layer_norm(x)
        fn.moments(x, keepdims="yes")
        fn.group_norm(x, 1, return_stats=True).shape
        fn.rms_norm(x, 3, eps="small")
        fn.Moments(axis=0).merge(x)
        fn.build_info()["no such key"]
        """))
    result = _mypy("--strict", "--config-file=", str(wrong), cwd=tmp_path, cache=mypy_cache)
    lines = {int(line.split(":")[1]) for line in result.stdout.splitlines()
             if line.startswith("wrong.py:") and ": error:" in line}
    assert lines == {4, 5, 6, 7, 8, 9}, result.stdout


@pytest.mark.parametrize("code, needs", [(USER_CODE, "dask.array"), (USER_CODE_TORCH, "torch")],
                         ids=["numpy-dask", "torch"])
def test_user_code_runs(tmp_path, code, needs):
    pytest.importorskip(needs, reason=f"{code.name} needs {needs}")
    result = subprocess.run([sys.executable, str(code)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0 and "user code ran" in result.stdout, result.stderr


@_not_under_asan
def test_stubs_match_the_runtime(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (it is in the test extra)")
    allowlist = tmp_path / "allowlist.txt"
    lines = (TESTS / "typing" / "stubtest-allowlist.txt").read_text().splitlines()
    for module, library in OPTIONAL.items():      # a module whose library is missing
        try:
            importlib.import_module(library)
        except ImportError:
            lines.append(module.replace(".", r"\.") + r"(\..*)?")
    allowlist.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "fastnorm", "--ignore-unused-allowlist",
         "--mypy-config-file", str(ROOT / "pyproject.toml"), "--allowlist", str(allowlist)],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pathlib.Path(fastnorm.__file__).parent != ROOT / "fastnorm"
