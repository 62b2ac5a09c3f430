"""Where a job's images come from: a dataset path under this replica's data root.

Checked twice: when the job is submitted (a 4xx the client sees) and again by the replica that claims it,
against its own data root (replicas mount the same datasets at their own root; files may also change while
the job waits in the queue).
"""

from __future__ import annotations

from pathlib import Path

from service.datasets import check_dataset_contained
from service.errors import Unprocessable
from service.paths import resolve_under


def resolve_dataset(data_root: Path, relative: str, split: str) -> Path:
    """The dataset path, kept inside the data root (with every file it names), shaped like a YOLO dataset."""
    return resolve_dataset_images(data_root, relative, split)[0]


def resolve_dataset_images(data_root: Path, relative: str, split: str) -> tuple[Path, int | None]:
    """:func:`resolve_dataset`, and how many images the containment walk found (None: not counted)."""
    path = resolve_under(data_root, relative, "dataset")
    if path.is_file() and path.suffix.lower() not in (".yaml", ".yml"):
        raise Unprocessable(
            f"dataset {relative!r} is a file but not a data.yaml", "name a YOLO directory or its data.yaml"
        )
    if path.is_dir() and not (path / "images").is_dir() and not any(path.glob("*.y*ml")):
        raise Unprocessable(
            f"dataset {relative!r} has no images/ directory and no data.yaml",
            "name a YOLO dataset directory (images/<split>, labels/<split>) or its data.yaml",
        )
    return path, check_dataset_contained(data_root, path, split, relative)
