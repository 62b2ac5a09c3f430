"""The SmartCash class table: 17 fine classes mapped onto 8 classes at inference.

The table is data (``classes.json``, the ``loss.json`` contract) and travels inside every native
checkpoint, so a checkpoint trained with another table still validates correctly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from smartcash_core.errors import ClassTableError


@dataclass(frozen=True)
class ClassTable:
    """Fine class names, mapped class names and the fine -> mapped index map."""

    fine_names: tuple[str, ...]
    mapped_names: tuple[str, ...]
    fine_to_mapped: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_names("fine_names", self.fine_names)
        _check_names("mapped_names", self.mapped_names)
        if len(self.fine_to_mapped) != len(self.fine_names):
            raise ClassTableError(
                f"fine_to_mapped has {len(self.fine_to_mapped)} entries but there are "
                f"{len(self.fine_names)} fine classes: every fine class needs a mapped id"
            )
        for fine_id, mapped_id in enumerate(self.fine_to_mapped):
            if isinstance(mapped_id, bool) or not isinstance(mapped_id, int):
                raise ClassTableError(f"fine_to_mapped[{fine_id}] must be an integer, got {mapped_id!r}")
            if not 0 <= mapped_id < len(self.mapped_names):
                raise ClassTableError(
                    f"fine_to_mapped[{fine_id}] = {mapped_id} is not a mapped class id "
                    f"(0..{len(self.mapped_names) - 1})"
                )
        unused = set(range(len(self.mapped_names))) - set(self.fine_to_mapped)
        if unused:
            raise ClassTableError(f"mapped classes {sorted(unused)} receive no fine class")

    @property
    def num_fine(self) -> int:
        return len(self.fine_names)

    @property
    def num_mapped(self) -> int:
        return len(self.mapped_names)

    def map_array(self) -> np.ndarray:
        """The fine -> mapped map as an int64 lookup array of length ``num_fine``."""
        return np.asarray(self.fine_to_mapped, dtype=np.int64)

    def to_dict(self) -> dict[str, list[Any]]:
        return {
            "fine_names": list(self.fine_names),
            "mapped_names": list(self.mapped_names),
            "fine_to_mapped": list(self.fine_to_mapped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassTable:
        if not isinstance(data, Mapping):
            raise ClassTableError(f"a class table must be a JSON object, got {type(data).__name__}")
        missing = [key for key in ("fine_names", "mapped_names", "fine_to_mapped") if key not in data]
        if missing:
            raise ClassTableError(f"class table is missing keys {missing}")
        fine_to_mapped = _mapping_as_list(data["fine_to_mapped"], len(data["fine_names"]))
        return cls(
            fine_names=tuple(_as_name_list("fine_names", data["fine_names"])),
            mapped_names=tuple(_as_name_list("mapped_names", data["mapped_names"])),
            fine_to_mapped=tuple(fine_to_mapped),
        )


def _as_name_list(field: str, value: Any) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ClassTableError(f"{field} must be a list of names")
    return list(value)


def _check_names(field: str, names: Sequence[str]) -> None:
    if not names:
        raise ClassTableError(f"{field} is empty")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ClassTableError(f"{field}[{index}] must be a non-empty string, got {name!r}")
    seen: set[str] = set()
    duplicates = sorted({name for name in names if name in seen or seen.add(name)})
    if duplicates:
        raise ClassTableError(f"{field} has duplicate names: {duplicates}")


def _mapping_as_list(value: Any, num_fine: int) -> list[Any]:
    """Accept the map as a list or as a ``{"fine_id": mapped_id}`` object (``loss.json`` style)."""
    if isinstance(value, Mapping):
        try:
            keyed = {int(key): mapped for key, mapped in value.items()}
        except (TypeError, ValueError) as exc:
            raise ClassTableError(f"fine_to_mapped keys must be class ids: {exc}") from exc
        unknown = sorted(key for key in keyed if not 0 <= key < num_fine)
        if unknown:
            raise ClassTableError(
                f"fine_to_mapped names unknown fine class ids {unknown} (0..{num_fine - 1})"
            )
        missing = sorted(set(range(num_fine)) - set(keyed))
        if missing:
            raise ClassTableError(f"fine_to_mapped misses fine classes {missing}")
        return [keyed[index] for index in range(num_fine)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise ClassTableError("fine_to_mapped must be a list or an object of fine id -> mapped id")


def load_class_table(source: str | Path | Mapping[str, Any]) -> ClassTable:
    """Load and validate a class table from a JSON file path or an already parsed dict."""
    if isinstance(source, Mapping):
        return ClassTable.from_dict(source)
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ClassTableError(f"class table {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassTableError(f"class table {path} is not valid JSON: {exc}") from exc
    try:
        return ClassTable.from_dict(data)
    except ClassTableError as exc:
        raise ClassTableError(f"class table {path}: {exc}") from exc


@cache
def default_class_table() -> ClassTable:
    """The SmartCash table shipped with the package (17 fine -> 8 mapped classes)."""
    text = resources.files("smartcash_core").joinpath("classes.json").read_text(encoding="utf-8")
    return ClassTable.from_dict(json.loads(text))
