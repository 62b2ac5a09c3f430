"""TEMPORARY merge aid (issue 10, branch r10-data): old module names of code moved to ``training/``.

``smartcash_core/validation_loss.py`` and ``smartcash_core/cli.py`` still import ``smartcash_core.loss``,
``smartcash_core.train`` and ``smartcash_core.data.synthetic``; another branch is rewriting those files, so
this branch leaves them alone. Delete this module and its import in ``smartcash_core/__init__.py`` once
they import from ``smartcash_core.training`` (nothing else uses the old names).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    "smartcash_core.loss": "smartcash_core.training.loss",
    "smartcash_core.train": "smartcash_core.training.train",
    "smartcash_core.data.synthetic": "smartcash_core.training.synthetic",
}


class _MovedModuleAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name as the very module object of its new home (one module, two names)."""

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._own_specs[module.__name__]  # the import system pointed it at the alias


def install() -> None:
    if not any(isinstance(finder, _MovedModuleAlias) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleAlias())  # last: a real module of that name would win
