"""PyTorch: torch.nn.functional with torch.set_num_threads(threads), in inference mode.
Importing this module imports torch (only done when a torch runner is built)."""
from ..cases import MOMENTUM
from . import Runner, Unavailable, for_op, named_table

try:
    import torch
    import torch.nn.functional as F
except Exception as exc:        # ImportError, or a broken install raising anything else
    torch = F = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def _batch_norm(training):
    def build(s, x, w, b):
        rm, rv = (torch.from_numpy(a) for a in s.running())
        eps = s.eps
        return lambda: F.batch_norm(x, rm, rv, w, b, training, MOMENTUM, eps)
    return build


def _layer_norm(s, x, w, b):
    ns, eps = s.case.normalized_shape, s.eps
    return lambda: F.layer_norm(x, ns, w, b, eps)


def _rms_norm(s, x, w, b):
    ns, eps = s.case.normalized_shape, s.eps
    return lambda: F.rms_norm(x, ns, w, eps)


def _instance_norm(s, x, w, b):
    eps = s.eps
    return lambda: F.instance_norm(x, None, None, w, b, True, MOMENTUM, eps)


def _group_norm(s, x, w, b):
    g, eps = s.case.arg, s.eps
    return lambda: F.group_norm(x, g, w, b, eps)


def _channel_layer_norm(s, x, w, b):
    # timm's LayerNorm2d: permute to channels-last, layer_norm, permute back (a view)
    ndim, c, eps = len(s.case.shape), s.case.shape[1], s.eps
    perm = (0,) + tuple(range(2, ndim)) + (1,)
    back = (0, ndim - 1) + tuple(range(1, ndim - 1))
    return lambda: F.layer_norm(x.permute(perm), (c,), w, b, eps).permute(back)


# op -> builder of call() for (Setup, x, weight, bias as tensors sharing the setup's arrays)
CALLS = named_table(globals())
NOTES = {"channel_layer_norm": "permute + layer_norm + permute"}


def runner(setup):
    if torch is None:
        raise Unavailable(f"torch cannot be imported ({_IMPORT_ERROR})")
    build = for_op(CALLS, setup.case.op)
    torch.set_num_threads(setup.threads)
    call = build(setup, *(torch.from_numpy(a) for a in (setup.x0, setup.weight, setup.bias)))
    return Runner(call, output=lambda: call().numpy(), context=torch.inference_mode,
                  note=NOTES.get(setup.case.op, ""))
