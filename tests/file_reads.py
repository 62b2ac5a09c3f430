"""Which files a piece of code opens, seen through Python's ``open`` audit event (PEP 578).

Every ``open()`` (builtins, ``io``, ``Path.read_text``, PIL's ``Image.open`` of a path) raises the event,
whatever thread runs it. The hook is installed once per process (audit hooks cannot be removed) and only
records inside :func:`recorded_reads`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_recording: list[list[str]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _recording or not args:
        return
    target = args[0]
    if isinstance(target, (str, bytes, os.PathLike)):
        with _lock:
            for sink in _recording:
                sink.append(os.fsdecode(target))


sys.addaudithook(_hook)


@contextmanager
def recorded_reads(under: Path) -> Iterator[set[Path]]:
    """Collects the real paths (symlinks followed) of files opened inside the block that lie in ``under``
    or resolve there (interpreter and library files are left out). Attempts on missing files read
    nothing and are left out too."""
    sink: list[str] = []
    found: set[Path] = set()
    base = under.resolve()
    with _lock:
        _recording.append(sink)
    try:
        yield found
    finally:
        with _lock:
            _recording.remove(sink)
        for name in sink:
            path = Path(name)
            if (path.is_relative_to(under) or path.resolve().is_relative_to(base)) and path.exists():
                found.add(path.resolve())
