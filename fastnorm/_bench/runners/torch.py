"""PyTorch: torch.nn.functional with torch.set_num_threads(threads), in inference mode.
Importing this module imports torch (only done when a torch runner is built)."""
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cases import MOMENTUM
from . import Runner, Unavailable, for_op, named_table

if TYPE_CHECKING:
    from ..data import Setup
    from ..images import ImageSetup

# torch and torch.nn.functional (None when they cannot be imported); mypy does not analyse
# torch here (pyproject.toml), so their objects are Any
torch: Any
F: Any
try:
    import torch as _torch
    import torch.nn.functional as _F
    torch, F = _torch, _F
except Exception as exc:        # ImportError, or a broken install raising anything else
    torch = F = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def _batch_norm(training: bool) -> "Build":
    def build(s: "Setup", x: Any, w: Any, b: Any) -> Callable[[], Any]:
        rm, rv = (torch.from_numpy(a) for a in s.running())
        eps = s.eps
        return lambda: F.batch_norm(x, rm, rv, w, b, training, MOMENTUM, eps)
    return build


def _layer_norm(s: "Setup", x: Any, w: Any, b: Any) -> Callable[[], Any]:
    ns, eps = s.case.normalized_shape, s.eps
    return lambda: F.layer_norm(x, ns, w, b, eps)


def _rms_norm(s: "Setup", x: Any, w: Any, b: Any) -> Callable[[], Any]:
    ns, eps = s.case.normalized_shape, s.eps
    return lambda: F.rms_norm(x, ns, w, eps)


def _instance_norm(s: "Setup", x: Any, w: Any, b: Any) -> Callable[[], Any]:
    eps = s.eps
    return lambda: F.instance_norm(x, None, None, w, b, True, MOMENTUM, eps)


def _group_norm(s: "Setup", x: Any, w: Any, b: Any) -> Callable[[], Any]:
    g, eps = s.case.arg, s.eps
    return lambda: F.group_norm(x, g, w, b, eps)


def _channel_layer_norm(s: "Setup", x: Any, w: Any, b: Any) -> Callable[[], Any]:
    # timm's LayerNorm2d: permute to channels-last, layer_norm, permute back (a view)
    ndim, c, eps = len(s.case.shape), s.case.shape[1], s.eps
    perm = (0,) + tuple(range(2, ndim)) + (1,)
    back = (0, ndim - 1) + tuple(range(1, ndim - 1))
    return lambda: F.layer_norm(x.permute(perm), (c,), w, b, eps).permute(back)


# op -> builder of call() for (Setup, x, weight, bias as tensors sharing the setup's arrays)
Build = Callable[["Setup", Any, Any, Any], Callable[[], Any]]
CALLS: dict[str, Build] = named_table(globals())
NOTES = {"channel_layer_norm": "permute + layer_norm + permute"}


def runner(setup: "Setup") -> Runner:
    if torch is None:
        raise Unavailable(f"torch cannot be imported ({_IMPORT_ERROR})")
    build = for_op(CALLS, setup.case.op)
    torch.set_num_threads(setup.threads)
    call = build(setup, *(torch.from_numpy(a) for a in (setup.x0, setup.weight, setup.bias)))
    return Runner(call, output=lambda: call().numpy(), context=torch.inference_mode,
                  note=NOTES.get(setup.case.op, ""))


# ---------------------------------------------------------------------------------------
# images (fastnorm._bench.images): the tensor ops of torchvision's ToImage, ToDtype(float32,
# scale=True) and Normalize (permute + contiguous, convert, divide, subtract, divide)

def image_runner(setup: "ImageSetup") -> Runner:
    if torch is None:
        raise Unavailable(f"torch cannot be imported ({_IMPORT_ERROR})")
    torch.set_num_threads(setup.threads)
    case = setup.case
    x = torch.from_numpy(setup.images)
    to_planes = (2, 0, 1) if case.single else (0, 3, 1, 2)
    if setup.standard:
        if case.layout != "NCHW":
            raise Unavailable("torchvision's pipeline produces NCHW")
        mean = torch.tensor(setup.mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.tensor(setup.std, dtype=torch.float32).reshape(-1, 1, 1)
        max_value = setup.max_value

        def f() -> Any:
            y = x.permute(to_planes).contiguous().to(torch.float32)
            y.div_(max_value)
            y.sub_(mean)
            y.div_(std)
            return y
    elif case.mode == "image_per_channel":
        dims = (-3, -2)

        def f() -> Any:
            y = x.to(torch.float32)
            m = y.mean(dim=dims, keepdim=True)
            s = y.std(dim=dims, keepdim=True, correction=0)
            y = ((y - m) / (s + 1e-4)).clamp_(-20, 20)
            return y.permute(to_planes).contiguous() if case.layout == "NCHW" else y
    else:
        raise Unavailable(f"no torch runner for mode {case.mode!r}")
    try:
        with torch.inference_mode():
            f()
    except Exception as exc:           # e.g. an op this torch lacks for uint16
        raise Unavailable(f"torch: {type(exc).__name__}: {exc}") from None
    return Runner(f, output=lambda: f().numpy(), context=torch.inference_mode,
                  note="permute + contiguous + to(float32) + div + sub + div"
                  if setup.standard else "")
