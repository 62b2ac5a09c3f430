"""Reading ``data.yaml`` safely: a dataset's YAML is untrusted input (the service reads files clients put
under the data root), so it is bounded before and while it is parsed.

- size: at most ``limits.MAX_DATA_YAML_BYTES``, checked on the bytes actually read (no trust in ``stat``);
- aliases (``*name``, and so ``<<: *name`` merges) are refused when the parser's event stream meets the
  first one, before anything is composed: a 442-byte file of nested aliases expands to hundreds of millions
  of nodes (took 9.5 s and ~1 GB);
- collections nested deeper than ``limits.MAX_DATA_YAML_DEPTH`` are refused the same way;
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

# libyaml (C) when PyYAML was built with it: ~6x faster on a 64 KiB file than the pure-Python loader
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSES = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _check_events(text: str) -> str | None:
    """Why ``text`` is refused (an alias, too deep), from the parser's events alone: nothing is composed or
    expanded, and the scan stops at the first offence. None when it is acceptable."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            anchor = shorten(str(event.anchor), 40)
            return f"YAML alias *{anchor} on line {line}: aliases are not allowed in a dataset file"
        if isinstance(event, _OPENS):
            depth += 1
            if depth > MAX_DATA_YAML_DEPTH:
                return f"nested deeper than {MAX_DATA_YAML_DEPTH} levels (line {line})"
        elif isinstance(event, _CLOSES):
            depth -= 1
    return None


def parse_dataset_yaml(text: str, origin: str) -> Any:
    """The YAML document in ``text`` under the rules above; errors name ``origin`` (a file name)."""
    try:
        refused = _check_events(text)
        if refused is not None:
            raise UnsafeDatasetFile(origin, refused)
        return yaml.load(text, Loader=_LOADER)  # a safe loader: SafeLoader or its C twin
    except yaml.YAMLError as exc:
        message = f"cannot read dataset file {origin}: {shorten(str(exc), 400)}"
        raise DatasetError(message, "unreadable") from exc
    except (ValueError, RecursionError) as exc:  # e.g. int('9' * 5000): over Python's digit limit
        raise DatasetError(f"cannot read dataset file {origin}: {shorten(str(exc))}", "unreadable") from exc


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
        raise DatasetError(f"cannot read dataset file {path}: {shorten(str(exc))}", "unreadable") from exc


def read_data_yaml(yaml_path: Path) -> dict[str, Any]:
    """``data.yaml`` as a mapping; ``DatasetError`` (``UnsafeDatasetFile`` for the refusals above)."""
    data = parse_dataset_yaml(read_bounded_text(yaml_path), str(yaml_path))
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_path} must be a YAML mapping with path/train/val/names", "unreadable")
    return data
