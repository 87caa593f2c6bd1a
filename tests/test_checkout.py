"""fastnorm/_checkout.py: the repository's fastnorm/ (no compiled kernels) defers to the
installed package, so `python -m fastnorm` works in the repository root after `pip install .`."""
import pathlib
import subprocess
import sys

import pytest

import fastnorm
from fastnorm import _checkout

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
INSTALLED = pathlib.Path(fastnorm.__file__).resolve().parent


def test_the_installed_package_is_not_a_source_checkout():
    assert not _checkout.is_source_checkout(str(INSTALLED))


def test_a_folder_of_python_files_is_a_source_checkout(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "_openmp_helpers.pyx").write_text("")
    assert _checkout.is_source_checkout(str(tmp_path))


@pytest.mark.skipif(not (REPO_ROOT / "fastnorm" / "_checkout.py").is_file(),
                    reason="needs the source tree beside the tests (not in a wheel's test run)")
@pytest.mark.parametrize("command", [
    ["-c", "import fastnorm, fastnorm._norms as n; print(fastnorm.__file__); print(n.__file__)"],
    ["-m", "fastnorm", "--info"],
])
def test_the_repository_root_runs_the_installed_copy(command):
    # the environment as it is (PYTHONPATH may be how the package under test is found)
    done = subprocess.run([sys.executable, *command], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if command[0] == "-c":
        paths = [pathlib.Path(line).resolve().parent for line in done.stdout.split()]
        assert paths == [INSTALLED, INSTALLED]
    else:
        assert "kernel_variant" in done.stdout
