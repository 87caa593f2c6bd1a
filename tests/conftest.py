"""Test configuration: the *installed* fastnorm is under test.

The compiled kernels exist only in the installed copy. pyproject.toml runs pytest with
--import-mode=importlib, and a `fastnorm` found in the repository root defers to the installed
package (fastnorm/_checkout.py); this file refuses to run should the source tree still be what
is imported. The tests directory is put on sys.path so that ``import _helpers`` works.
"""
import pathlib
import sys

TESTS_DIR = pathlib.Path(__file__).resolve().parent
SOURCE_PKG = (TESTS_DIR.parent / "fastnorm").resolve()

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import fastnorm  # noqa: E402

_pkg_dir = pathlib.Path(fastnorm.__file__).resolve().parent
if _pkg_dir == SOURCE_PKG:
    raise RuntimeError(
        f"fastnorm was imported from the source tree ({_pkg_dir}), not from the installed "
        "package: install it (pip install /path/to/repo) and run pytest again")


def pytest_report_header(config):
    return f"fastnorm under test: {_pkg_dir} (version {getattr(fastnorm, '__version__', '?')})"
