"""`python -m fastnorm` (or `import fastnorm`) run in the repository root after `pip install .`.

There the current directory comes first on sys.path, so Python finds the repository's
fastnorm/, which has no compiled kernels. `use_installed_copy` then imports the installed
package in its place: the import statement that started this returns the installed module,
and the relative imports of the source __init__ that follow resolve to it too.
"""
import importlib
import importlib.machinery
import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def is_source_checkout(package_dir: str = _PACKAGE_DIR) -> bool:
    """True when `package_dir` holds no compiled fastnorm extension (a source tree)."""
    names = os.listdir(package_dir)
    return not any(name.startswith("_openmp_helpers") and name.endswith(suffix)
                   for name in names for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def use_installed_copy() -> None:
    """In a source checkout, put the installed fastnorm in sys.modules instead of this one."""
    if not is_source_checkout():
        return
    root = os.path.dirname(_PACKAGE_DIR)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    for name in [m for m in sys.modules if m == "fastnorm" or m.startswith("fastnorm.")]:
        del sys.modules[name]
    try:
        importlib.import_module("fastnorm")
    except ImportError as exc:
        raise ImportError("fastnorm is imported from its source tree, which has no compiled "
                          "kernels, and no installed copy was found: run `pip install .`") \
            from exc
    finally:
        sys.path[:] = saved
