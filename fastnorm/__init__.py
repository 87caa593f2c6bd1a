"""fastnorm: fast, accurate CPU normalization kernels for NumPy arrays.

BatchNorm, InstanceNorm, GroupNorm, LayerNorm, RMSNorm and channels-first LayerNorm with
torch.nn.functional semantics, in place or not, plus accurate mergeable statistics
(`moments`, `Moments`). See README.md for the API.
"""
import importlib.machinery as _machinery
import os as _os


def _is_source_checkout():
    """True when this is the repository's fastnorm/ (no compiled kernels beside it), as when
    `python -m fastnorm` runs in the repository root after `pip install .`."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    names = _os.listdir(here)
    return not any(name.startswith("_openmp_helpers") and name.endswith(suffix)
                   for name in names for suffix in _machinery.EXTENSION_SUFFIXES)


def _installed_copy():
    """Import the installed fastnorm in place of this source checkout."""
    import importlib
    import sys
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if _os.path.abspath(p or _os.curdir) != root]
    del sys.modules[__name__]
    try:
        return importlib.import_module(__name__)   # the import system returns it to callers
    except ImportError as exc:
        raise ImportError("fastnorm is imported from its source tree, which has no compiled "
                          "kernels, and no installed copy was found: run `pip install .`") \
            from exc
    finally:
        sys.path[:] = saved


if _is_source_checkout():
    _installed_copy()
else:
    from ._version import __version__
    from ._norms import (batch_norm, channel_layer_norm, group_norm, instance_norm,
                         layer_norm, rms_norm)
    from ._stats import Moments, moments
    from ._info import build_info

__all__ = [
    "__version__", "batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
    "channel_layer_norm", "moments", "Moments", "build_info",
]
