"""fastnorm: fast, accurate CPU normalization kernels for NumPy arrays and PyTorch tensors.

BatchNorm, InstanceNorm, GroupNorm, LayerNorm, RMSNorm and channels-first LayerNorm with
torch.nn.functional semantics, in place or not, plus accurate mergeable statistics
(`moments`, `Moments`, exact for integer data), and `normalize_image`: decoded images to a
model's input in one pass. Every public function takes CPU torch tensors too and then returns
tensors (importing fastnorm never imports torch); `fastnorm.torch.optimize(model)` makes a
model's norm layers use the kernels. See README.md for the API.
"""
from ._checkout import use_installed_copy as _use_installed_copy

_use_installed_copy()        # the repository's fastnorm/ defers to the installed package

from ._version import __version__  # noqa: E402
from . import _image, _norms, _stats  # noqa: E402
from ._tensors import accepts_tensors as _accepts_tensors  # noqa: E402
from ._info import build_info  # noqa: E402

# Each public function and method that takes arrays goes through _accepts_tensors (CPU torch
# tensors in, tensors out); `writes` names the arguments it may write in place, `fast` the
# fast path tried first.
_RUNNING = ("out", "running_mean", "running_var")
batch_norm = _accepts_tensors(_norms.batch_norm, writes=_RUNNING, fast=_norms.batch_norm_fast)
instance_norm = _accepts_tensors(_norms.instance_norm, writes=_RUNNING)
group_norm = _accepts_tensors(_norms.group_norm)
layer_norm = _accepts_tensors(_norms.layer_norm, fast=_norms.layer_norm_fast)
rms_norm = _accepts_tensors(_norms.rms_norm, fast=_norms.rms_norm_fast)
channel_layer_norm = _accepts_tensors(_norms.channel_layer_norm)
normalize_image = _accepts_tensors(_image.normalize_image)
moments = _accepts_tensors(_stats.moments)
Moments = _stats.Moments
Moments.update = _accepts_tensors(Moments.update, writes=())

__all__ = [
    "__version__", "batch_norm", "instance_norm", "group_norm", "layer_norm", "rms_norm",
    "channel_layer_norm", "moments", "Moments", "normalize_image", "build_info",
]
