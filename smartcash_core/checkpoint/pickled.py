"""What the restricted unpickler returns: inert stand-ins for pickled modules and unread tensors.

Nothing here runs code from a file. A :class:`PickledModule` only records the ``__dict__`` a module was
pickled with; a :class:`TensorRef` names a bounds-checked view of a :class:`StorageRef`, whose bytes stay
in the archive until ``checkpoint.torch_zip`` reads the few a model needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from smartcash_core.checkpoint import limits
from smartcash_core.errors import CheckpointError, CheckpointTooLargeError

__all__ = ["PickledModule", "StorageRef", "TensorRef"]


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A tensor storage named by a persistent id; its bytes stay in the archive until needed."""

    key: str
    dtype: torch.dtype
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A strided view of a storage, already checked to stay inside it."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.size)


class PickledModule:
    """Inert stand-in for a pickled ``nn.Module``: remembers its class name and pickled ``__dict__``."""

    qualified_name: ClassVar[str] = "?"

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"__state__": state}

    @property
    def class_name(self) -> str:
        return self.qualified_name.rsplit(".", 1)[-1]

    def children(self) -> dict[str, PickledModule]:
        modules = self.state.get("_modules")
        if not isinstance(modules, dict):
            return {}
        return {str(name): child for name, child in modules.items() if isinstance(child, PickledModule)}

    def walk(self) -> list[tuple[str, PickledModule]]:
        """Every module in the tree with its dotted path (``""`` for the root), depth and size capped.

        A pickle can build cycles and exponentially shared trees; both are refused, not followed.
        """
        found: list[tuple[str, PickledModule]] = []
        pending: list[tuple[str, PickledModule, tuple[int, ...]]] = [("", self, ())]
        while pending:
            name, module, ancestors = pending.pop()
            if id(module) in ancestors:
                raise CheckpointError(f"the pickled module tree has a cycle at {name or 'the root'}")
            if len(ancestors) > limits.MAX_MODULE_DEPTH or len(found) >= limits.MAX_MODULES:
                raise CheckpointTooLargeError("the pickled module tree is deeper or larger than any YOLOv5")
            found.append((name, module))
            path = (*ancestors, id(module))
            for child_name, child in reversed(module.children().items()):
                pending.append((f"{name}.{child_name}" if name else child_name, child, path))
        return found

    def tensors(self) -> dict[str, TensorRef]:
        """Flattened ``state_dict``-style view: persistent parameters and buffers of the whole tree."""
        found: dict[str, TensorRef] = {}
        for name, module in self.walk():
            prefix = f"{name}." if name else ""
            skipped = module.state.get("_non_persistent_buffers_set")
            skipped = skipped if isinstance(skipped, set) else set()
            for group in ("_parameters", "_buffers"):
                values = module.state.get(group)
                for key, value in (values.items() if isinstance(values, dict) else ()):
                    if isinstance(value, TensorRef) and key not in skipped:
                        found[f"{prefix}{key}"] = value
        return found
