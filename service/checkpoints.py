"""What ``POST /v1/models`` can load: the checkpoint files under the checkpoint root.

Each file is listed with its path relative to the root (what ``checkpoint`` takes), its size, and, when a
loaded model came from it, the file's sha256 and the names it is loaded as. Nothing is hashed or opened
here (a root may hold many large files): the digest is the one the registry computed when it loaded the
file. Symlinks that resolve outside the root are left out, as ``POST /v1/models`` would refuse them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service.registry import ModelEntry

CHECKPOINT_SUFFIXES = frozenset({".safetensors", ".pt", ".pth"})
MAX_LISTED = 1000  # a listing, not an inventory: the first files in sorted order


@dataclass(frozen=True)
class CheckpointFile:
    path: str
    size: int
    sha256: str | None
    loaded_as: list[str]


def list_checkpoints(root: Path, entries: list[ModelEntry], limit: int = MAX_LISTED) -> list[CheckpointFile]:
    """Checkpoint files under ``root`` (sorted by path, at most ``limit``) with what is loaded from them."""
    resolved_root = root.resolve()
    loaded = _loaded_by_file(resolved_root, entries)
    listed = []
    for path in sorted(_candidates(resolved_root))[:limit]:
        real = path.resolve()
        if not real.is_relative_to(resolved_root) or not real.is_file():
            continue
        names = loaded.get(real, [])
        digest = next((entry.file_sha256 for entry in entries if entry.name in names), None)
        relative = path.relative_to(resolved_root).as_posix()
        listed.append(CheckpointFile(relative, real.stat().st_size, digest, names))
    return listed


def _candidates(root: Path) -> Iterator[Path]:
    """Files with a checkpoint suffix, hidden folders and files skipped (``os.walk``: no link loops)."""
    if not root.is_dir():
        return
    for folder, folders, files in os.walk(root):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in CHECKPOINT_SUFFIXES:
                yield Path(folder) / name


def _loaded_by_file(root: Path, entries: list[ModelEntry]) -> dict[Path, list[str]]:
    """Real path of each loaded model's checkpoint -> the names it is loaded as (sorted)."""
    by_file: dict[Path, list[str]] = {}
    for entry in entries:
        try:
            real = (root / entry.checkpoint).resolve()
        except (OSError, RuntimeError, ValueError):  # a label that is not a path (an operator's preload)
            continue
        if real.is_relative_to(root):
            by_file.setdefault(real, []).append(entry.name)
    return {path: sorted(names) for path, names in by_file.items()}
