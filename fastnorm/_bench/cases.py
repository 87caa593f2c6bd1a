"""The benchmark case set: normalizations on float32 tensors drawn from real workloads."""
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

DEFAULT_THREADS = 2
DTYPE = np.float32
EPS = 1e-5
MOMENTUM = 0.1

# op -> short name used in case ids
_SHORT = {"batch_norm_eval": "bn_eval", "batch_norm_train": "bn_train", "layer_norm": "ln",
          "instance_norm": "in", "group_norm": "gn", "rms_norm": "rms",
          "channel_layer_norm": "cln"}
OPS = tuple(_SHORT)


class Shaped:
    """What the cases of both benchmark tables (normalizations, images) derive from their
    `shape`."""
    shape: tuple[int, ...]

    @property
    def shape_str(self) -> str:
        return "x".join(map(str, self.shape))

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Case(Shaped):
    id: str                 # short identifier (pytest ids, JSON, --case filter)
    op: str                 # one of OPS
    shape: tuple[int, ...]
    arg: int = 0            # layer_norm/rms_norm: number of normalized trailing dims;
                            # group_norm: number of groups
    quick: bool = False     # part of the --quick subset
    tiny: bool = False
    channels_last: bool = False   # x in channels-last (NHWC) memory, torch channels_last

    @property
    def label(self) -> str:
        return self._op_label + (" NHWC" if self.channels_last else "")

    @property
    def _op_label(self) -> str:
        if self.op in ("layer_norm", "rms_norm"):
            dims = "[-1]" if self.arg == 1 else "[" + ",".join(("C", "H", "W", "D")[
                len(self.shape) - self.arg - 1:][:self.arg]) + "]"
            return f"{self.op} {dims}"
        if self.op == "group_norm":
            return f"group_norm G={self.arg}"
        if self.op.startswith("batch_norm"):
            return "batch_norm " + self.op.rsplit("_", 1)[1]
        return self.op

    @property
    def normalized_shape(self) -> tuple[int, ...]:
        """layer_norm/rms_norm: the trailing dims normalized over."""
        return self.shape[len(self.shape) - self.arg:]

    def nbytes(self, dtype: DTypeLike = DTYPE) -> int:
        return self.size * np.dtype(dtype).itemsize


def _case(op: str, shape: tuple[int, ...], arg: int = 0, quick: bool = False,
          tiny: bool = False, channels_last: bool = False) -> Case:
    short = _SHORT[op]
    if op in ("layer_norm", "rms_norm"):
        short += f"{arg}d"
    suffix = "_nhwc" if channels_last else ""
    return Case(f"{short}_{'x'.join(map(str, shape))}{suffix}", op, tuple(shape), arg, quick,
                tiny, channels_last)


# channels-last rows: each beside the same op on the same shape in NCHW memory
_CHANNELS_LAST_OPS = [("batch_norm_eval", 0), ("batch_norm_train", 0), ("instance_norm", 0),
                      ("group_norm", 32), ("channel_layer_norm", 0)]
_CHANNELS_LAST_SHAPES = [(8, 256, 56, 56), (32, 64, 56, 56)]


CASES = [
    _case("batch_norm_eval", (1, 64, 112, 112), quick=True),
    _case("batch_norm_eval", (32, 256, 56, 56)),
    _case("batch_norm_train", (8, 512, 28, 28), quick=True),
    _case("batch_norm_train", (32, 256, 56, 56)),
    _case("layer_norm", (8, 512, 768), 1, quick=True),
    _case("layer_norm", (1, 197, 768), 1),
    _case("layer_norm", (16, 256, 4096), 1),
    _case("layer_norm", (32, 64, 56, 56), 3),
    _case("instance_norm", (8, 64, 128, 128)),
    _case("group_norm", (8, 256, 56, 56), 32, quick=True),
    _case("rms_norm", (16, 256, 4096), 1),
    _case("channel_layer_norm", (32, 96, 56, 56)),
    _case("layer_norm", (1, 768), 1, quick=True, tiny=True),
    _case("batch_norm_eval", (1, 64, 8, 8), quick=True, tiny=True),
] + [_case(op, shape, arg, channels_last=layout)
     for shape in _CHANNELS_LAST_SHAPES for op, arg in _CHANNELS_LAST_OPS
     for layout in (False, True)]


def select_cases(quick: bool = False, pattern: str | None = None) -> list[Case]:
    """The full case set, or the --quick subset; `pattern` keeps the cases whose id or label
    contains it."""
    cases = [c for c in CASES if c.quick or not quick]
    if pattern:
        cases = [c for c in cases if pattern in c.id or pattern in c.label]
    return cases
