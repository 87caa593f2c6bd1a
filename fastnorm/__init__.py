"""fastnorm: fast, accurate CPU normalization kernels for NumPy arrays.

BatchNorm, InstanceNorm, GroupNorm, LayerNorm, RMSNorm and channels-first LayerNorm with
torch.nn.functional semantics, in place or not, plus accurate mergeable statistics
(`moments`, `Moments`). See README.md for the API.
"""
from ._version import __version__
from ._norms import (batch_norm, channel_layer_norm, group_norm, instance_norm, layer_norm,
                     rms_norm)
from ._stats import Moments, moments
from ._info import build_info

__all__ = [
    "__version__", "batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
    "channel_layer_norm", "moments", "Moments", "build_info",
]
