# Type hints of fastnorm.torch (PEP 561). The runtime is torch.py; tests/test_typing.py runs
# stubtest against it. (The tensor signatures of the public functions are in __init__.pyi.)
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from torch import nn

__all__ = ["optimize", "report", "Report", "ops"]

_Model = TypeVar("_Model", bound=nn.Module)

ops: Any    # torch.ops.fastnorm, the custom ops of fastnorm._torch_ops

def optimize(model: _Model, *, inplace: bool = False) -> _Model: ...

class Entry(NamedTuple):
    name: str
    type: str
    kind: str
    reason: str
    fastnorm_calls: int
    own_calls: dict[str, int]

class Report(NamedTuple):
    taken: list[Entry]
    left_alone: list[Entry]

def report(model: nn.Module) -> Report: ...

# the translation every public function uses for tensor arguments (fastnorm/_tensors.py)
def call_with_tensors(func: Callable[..., Any], names: Sequence[str], writes: frozenset[str],
                      args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any: ...
