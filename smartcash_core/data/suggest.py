"""Near matches for a path that does not exist: the names beside it that look like what was typed."""

from __future__ import annotations

import difflib
from pathlib import Path

_MAX_LISTED = 2000  # a folder with more entries is not searched (the suggestion is a courtesy)


def near_matches(path: Path, limit: int = 3) -> list[Path]:
    """Paths that exist where ``path``'s first missing component is, with a name close to it (difflib).

    ``data/banknote/val`` with ``data/banknotes`` on disk gives ``[data/banknotes]``. Empty when nothing
    is close, when no parent exists, or when the folder cannot be listed.
    """
    missing, parent = path, path.parent
    while parent != missing and not parent.is_dir():
        missing, parent = parent, parent.parent
    if parent == missing or not missing.name:
        return []
    try:
        names = []
        for entry in parent.iterdir():
            names.append(entry.name)
            if len(names) > _MAX_LISTED:
                return []
    except OSError:
        return []
    return [parent / name for name in difflib.get_close_matches(missing.name, names, n=limit, cutoff=0.6)]


def did_you_mean(path: Path, relative_to: Path | None = None) -> str:
    """``"; did you mean a or b?"`` for the :func:`near_matches` of ``path`` (``""`` without any), each
    shown relative to ``relative_to`` when given (a root the reader does not see)."""
    matches = near_matches(path)
    if relative_to is not None:
        matches = [match.relative_to(relative_to) for match in matches if match.is_relative_to(relative_to)]
    if not matches:
        return ""
    return f"; did you mean {' or '.join(str(match) for match in matches)}?"
