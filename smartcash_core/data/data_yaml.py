"""Reading ``data.yaml`` safely: a dataset's YAML is untrusted input (the service reads files clients put
under the data root), so it is bounded before and while it is parsed.

- size: at most ``limits.MAX_DATA_YAML_BYTES``, checked on the bytes actually read (no trust in ``stat``);
- aliases (``*name``, and so ``<<: *name`` merges) are refused when the parser meets the first one: a
  442-byte file of nested aliases expands to hundreds of millions of nodes (took 9.5 s and ~1 GB);
- nesting deeper than ``limits.MAX_DATA_YAML_DEPTH`` is refused before Python's recursion limit is near;
- values that parse but cannot be numbers (an integer of 5000 digits) are a ``DatasetError``, not a crash.

Refusals are :class:`~smartcash_core.errors.UnsafeDatasetFile` (a ``DatasetError``); every message quotes
at most ``limits.MAX_ECHO_CHARS`` of anything taken from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from smartcash_core.data.limits import MAX_DATA_YAML_BYTES, MAX_DATA_YAML_DEPTH, shorten
from smartcash_core.errors import DatasetError, UnsafeDatasetFile


class _Refused(Exception):
    """Raised inside the loader (which does not know the file's name); becomes ``UnsafeDatasetFile``."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader (pure Python, so the composer can be bounded) without aliases, depth-capped."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(
                f"YAML alias *{shorten(str(event.anchor), 40)} on line {event.start_mark.line + 1}: aliases "
                "are not allowed in a dataset file"
            )
        self.depth += 1
        try:
            if self.depth > MAX_DATA_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"nested deeper than {MAX_DATA_YAML_DEPTH} levels (line {line})")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


def parse_dataset_yaml(text: str, origin: str) -> Any:
    """The YAML document in ``text`` under the rules above; errors name ``origin`` (a file name)."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise UnsafeDatasetFile(origin, str(exc)) from None
    except yaml.YAMLError as exc:
        raise DatasetError(f"cannot read dataset file {origin}: {shorten(str(exc), 400)}") from exc
    except (ValueError, RecursionError) as exc:  # e.g. int('9' * 5000): over Python's digit limit
        raise DatasetError(f"cannot read dataset file {origin}: {shorten(str(exc))}") from exc
    finally:
        loader.dispose()


def read_bounded_text(path: Path, max_bytes: int = MAX_DATA_YAML_BYTES) -> str:
    """``path`` as UTF-8 text, refused (``UnsafeDatasetFile``) when it holds more than ``max_bytes``;
    ``DatasetError`` (from the ``OSError`` / ``UnicodeDecodeError``) when it cannot be read."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # one byte more tells "too large" without reading it all
        if len(data) > max_bytes:
            reason = f"larger than {max_bytes // 1024} KiB (a data.yaml needs a few KB); not parsed"
            raise UnsafeDatasetFile(str(path), reason)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset file {path}: {shorten(str(exc))}") from exc


def read_data_yaml(yaml_path: Path) -> dict[str, Any]:
    """``data.yaml`` as a mapping; ``DatasetError`` (``UnsafeDatasetFile`` for the refusals above)."""
    data = parse_dataset_yaml(read_bounded_text(yaml_path), str(yaml_path))
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_path} must be a YAML mapping with path/train/val/names")
    return data
