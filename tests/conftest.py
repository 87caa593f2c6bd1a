"""Test configuration: make sure the *installed* fastnorm is under test.

The compiled kernels exist only in the installed copy, so importing the source tree
(``<repo>/fastnorm``) would either fail or, worse, test stale files. We drop the repository
root from ``sys.path`` (it gets there when pytest is started from the repo root with
``python -m pytest``) and then refuse to run if ``fastnorm`` still resolves to the source tree.
The tests directory itself is put on ``sys.path`` so that ``import _helpers`` works under
every ``--import-mode``.
"""

import os
import pathlib
import sys

TESTS_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SOURCE_PKG = REPO_ROOT / "fastnorm"


def _resolves_to_repo_root(entry):
    try:
        path = pathlib.Path(entry or os.getcwd()).resolve()
    except (OSError, RuntimeError):
        return False
    return path == REPO_ROOT


sys.path[:] = [p for p in sys.path if not _resolves_to_repo_root(p)]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import fastnorm  # noqa: E402  (must come after the sys.path clean-up)

_pkg_file = pathlib.Path(fastnorm.__file__).resolve()
if SOURCE_PKG.resolve() == _pkg_file.parent or SOURCE_PKG.resolve() in _pkg_file.parents:
    raise RuntimeError(
        "fastnorm was imported from the source tree (%s), not from the installed package. "
        "Install it (pip install /path/to/repo) and run pytest from outside the repository "
        "or with --import-mode=importlib." % _pkg_file
    )


def pytest_report_header(config):
    return "fastnorm under test: %s (version %s)" % (
        _pkg_file.parent,
        getattr(fastnorm, "__version__", "?"),
    )
