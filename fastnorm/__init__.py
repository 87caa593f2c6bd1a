"""fastnorm: fast, accurate CPU normalization kernels for NumPy arrays.

BatchNorm, InstanceNorm, GroupNorm, LayerNorm, RMSNorm and channels-first LayerNorm with
torch.nn.functional semantics, in place or not, plus accurate mergeable statistics
(`moments`, `Moments`, exact for integer data), and `normalize_image`: decoded images to a
model's input in one pass. See README.md for the API.
"""
from ._checkout import use_installed_copy as _use_installed_copy

_use_installed_copy()        # the repository's fastnorm/ defers to the installed package

from ._version import __version__  # noqa: E402
from ._norms import (batch_norm, channel_layer_norm, group_norm, instance_norm,  # noqa: E402
                     layer_norm, rms_norm)
from ._stats import Moments, moments  # noqa: E402
from ._image import normalize_image  # noqa: E402
from ._info import build_info  # noqa: E402

__all__ = [
    "__version__", "batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
    "channel_layer_norm", "moments", "Moments", "normalize_image", "build_info",
]
